from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recadmin.core.errors import ServiceUnavailable
from recadmin.modelops.services import models_sync_torchserve


class Command(BaseCommand):
    help = (
        "Register in TorchServe every registered/default version it lacks (from model_store/, after "
        "checking each archive's sha256) and set the default. Run it after TorchServe restarts; beat "
        "runs it every minute once `schedule_retraining` has been run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default=None, help="Only this model name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = models_sync_torchserve(name=options["name"])
        except ServiceUnavailable as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(report.summary())
        if not report.ok:
            raise CommandError("Some versions could not be registered again (see above).")
