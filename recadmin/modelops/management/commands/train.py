from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recadmin.core.errors import ApplicationError
from recadmin.modelops.models import ModelKind, TrainingRun


class Command(BaseCommand):
    help = (
        "Train a model in the foreground with a progress bar: export the events, train, evaluate, "
        "archive, register in TorchServe, promotion gate (the same pipeline as the Celery task). "
        "With --run, execute an existing queued run instead (how runs start without a Celery worker)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", default=ModelKind.SASREC, choices=ModelKind.values)
        parser.add_argument("--params", default="{}", help="Model parameters as JSON, e.g. '{\"max_epochs\": 20}'")
        parser.add_argument("--model-name", default=None)
        parser.add_argument("--run", type=int, default=None, help="Execute this queued training run")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from tqdm import tqdm

        from recadmin.modelops.services import training_run_create, training_run_execute

        if options["run"] is not None:
            run = TrainingRun.objects.filter(pk=options["run"]).first()
            if run is None:
                raise CommandError(f"Training run {options['run']} does not exist.")
        else:
            try:
                params = json.loads(options["params"])
            except ValueError as exc:
                raise CommandError(f"--params is not valid JSON: {exc}") from exc
            try:
                run = training_run_create(
                    kind=options["kind"], params=params, model_name=options["model_name"], trigger="cli", enqueue=False
                )
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc

        bar_format = "{l_bar}{bar}| {n:.0f}% [{elapsed}] {postfix}"
        bar = None if options["no_progress"] else tqdm(total=100, unit="%", bar_format=bar_format)

        def progress(percent: float, stage: str) -> None:
            if bar is not None:
                bar.n = percent
                bar.set_postfix_str(stage[:60], refresh=True)

        run = training_run_execute(run=run, progress=progress)
        if bar is not None:
            bar.close()
        if run.status != "succeeded":
            raise CommandError(f"Training run #{run.pk} {run.status}: {run.error}")
        self.stdout.write(f"Training run #{run.pk} succeeded: {run.gate_decision}")
