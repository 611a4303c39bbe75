from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recadmin.core.errors import ValidationError
from recadmin.modelops.models import ModelKind
from recadmin.modelops.services import retraining_schedule_set, torchserve_sync_schedule_ensure


class Command(BaseCommand):
    help = (
        "Create or update the nightly retraining schedule (a django-celery-beat periodic task, editable "
        "in the admin under Periodic tasks). Celery beat must run for it to fire."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hour", type=int, default=3, help="Hour of day, 0-23 (default: %(default)s)")
        parser.add_argument("--minute", type=int, default=0, help="Minute, 0-59 (default: %(default)s)")
        parser.add_argument("--kind", default=ModelKind.SASREC, choices=ModelKind.values)
        parser.add_argument("--model-name", default=None, help="TorchServe model name (default: the configured one)")
        parser.add_argument("--params", default="{}", help="Model parameters as JSON, e.g. '{\"epochs\": 50}'")
        parser.add_argument("--disable", action="store_true", help="Keep the schedule but switch it off")
        parser.add_argument(
            "--sync-every",
            type=int,
            default=60,
            help="Also schedule the TorchServe sync every N seconds (default: %(default)s; 0 = leave it alone)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            params = json.loads(options["params"])
        except ValueError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from exc
        try:
            task = retraining_schedule_set(
                hour=options["hour"],
                minute=options["minute"],
                kind=options["kind"],
                params=params,
                model_name=options["model_name"],
                enabled=not options["disable"],
            )
        except ValidationError as exc:
            raise CommandError(exc.message) from exc
        state = "enabled" if task.enabled else "disabled"
        self.stdout.write(f"{task.name}: {task.description} ({state}, periodic task #{task.pk})")
        if options["sync_every"]:
            try:
                sync = torchserve_sync_schedule_ensure(every_seconds=options["sync_every"])
            except ValidationError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(f"{sync.name}: every {options['sync_every']}s (periodic task #{sync.pk})")
