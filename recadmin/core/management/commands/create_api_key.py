from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recadmin.core.errors import ValidationError
from recadmin.core.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it once. The key cannot be shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who uses the key, e.g. storefront")
        parser.add_argument(
            "--scopes",
            default="ingest,recommend",
            help="Comma-separated: ingest, recommend, manage (default: %(default)s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = api_key_create(name=options["name"], scopes=options["scopes"].split(","))
        except ValidationError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(
            f"Created API key '{created.api_key.name}' with scopes {', '.join(created.api_key.scopes)}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(created.raw_key)
