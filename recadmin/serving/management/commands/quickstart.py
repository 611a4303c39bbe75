"""`manage.py quickstart`: the whole product on one machine, from an empty checkout.

Migrate, an admin account and an API key (printed), the standard scenes, a demo shop, TorchServe,
a trained model packaged as a .mar and registered as the default version, then the admin and the
API served on localhost. Every step is idempotent: a second run reuses what the first one made.
It lives in `serving`, the top app, because it drives every app below it.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

ADMIN_USERNAME = "admin"
QUICK_EPOCHS = 20
EPOCH_KINDS = {"sasrec", "hybrid", "cf"}


class Command(BaseCommand):
    help = (
        "Set up and run recadmin on this machine: migrate, admin account and API key, demo shop, "
        "train a model, start TorchServe and register it, serve the admin and API."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (default: %(default)s).")
        parser.add_argument("--port", type=int, default=8000, help="Port to serve on (default: %(default)s).")
        parser.add_argument("--kind", default="sasrec", help="Model to train: sasrec, hybrid, cf, itemknn, pop.")
        parser.add_argument(
            "--epochs",
            type=int,
            default=None,
            help=f"Training epochs for sasrec/cf (default {QUICK_EPOCHS}, a demo in minutes; nightly runs use more).",
        )
        parser.add_argument("--items", type=int, default=2000, help="Demo shop: number of items.")
        parser.add_argument("--customers", type=int, default=1000, help="Demo shop: number of customers.")
        parser.add_argument("--seed", type=int, default=7, help="Demo shop and training seed.")
        parser.add_argument("--retrain", action="store_true", help="Train a new version even if one is default.")
        parser.add_argument("--no-serve", action="store_true", help="Set everything up, then exit without serving.")
        parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (default 1: see below).")
        parser.add_argument(
            "--simulate",
            action="store_true",
            help="Once the server is up, run simulated visitors of the demo shop against it in the background "
            "(manage.py simulate_traffic) so that the dashboard fills up.",
        )
        parser.add_argument("--simulate-seconds", type=float, default=1800.0, help="How long (default 30 min).")
        parser.add_argument("--simulate-rate", type=float, default=10.0, help="Requests per second (default 10).")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        self._step("Database")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write(
            f"  {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}: {settings.DATABASES['default']['NAME']}"
        )

        self._step("Admin account and API key")
        username, password = self._admin_account()
        raw_key = self._api_key()

        self._step("Scenes and demo shop")
        call_command("seed_scenes", verbosity=0)
        self._demo_shop(options)

        self._step("TorchServe")
        torchserve = self._torchserve()

        self._step("Model")
        version = self._model(options)

        base = f"http://{options['host']}:{options['port']}"
        from recadmin.catalog.models import Customer

        customer = Customer.objects.order_by("id").values_list("shop_id", flat=True).first() or "new-customer"
        self._summary(base, username, password, raw_key, version, customer, time.monotonic() - started)
        if options["no_serve"]:
            return
        self._serve(options, torchserve, raw_key)

    # --- steps ---------------------------------------------------------------------------------

    def _step(self, title: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n== {title}"))

    def _credentials_file(self, name: str) -> Path:
        return Path(settings.VAR_DIR) / name

    def _admin_account(self) -> tuple[str, str]:
        # The password is kept (mode 0600) under var/ so that a second run can print it again; it
        # is a local convenience for a single machine, which is what quickstart sets up.
        user_model = get_user_model()
        secret_file = self._credentials_file("quickstart-admin-password")
        user = user_model.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
            secret_file.write_text(password)
            secret_file.chmod(0o600)
            self.stdout.write(f"  created superuser '{ADMIN_USERNAME}'")
        elif secret_file.exists() and user.check_password(secret_file.read_text().strip()):
            password = secret_file.read_text().strip()
            self.stdout.write(f"  superuser '{ADMIN_USERNAME}' exists")
        else:
            password = "(unchanged: reset it with `manage.py changepassword admin`)"
            self.stdout.write(f"  superuser '{ADMIN_USERNAME}' exists with a password set elsewhere")
        return ADMIN_USERNAME, password

    def _api_key(self) -> str:
        from recadmin.core.models import ApiKey
        from recadmin.core.services import api_key_create, hash_api_key

        key_file = self._credentials_file("quickstart-api-key")
        if key_file.exists():
            raw = key_file.read_text().strip()
            if ApiKey.objects.filter(hashed_key=hash_api_key(raw), revoked_at__isnull=True).exists():
                self.stdout.write("  API key 'quickstart' exists")
                return raw
        created = api_key_create(name="quickstart", scopes=["ingest", "recommend", "manage"])
        key_file.write_text(created.raw_key)
        key_file.chmod(0o600)
        self.stdout.write("  created API key 'quickstart' (scopes ingest, recommend, manage)")
        return created.raw_key

    def _demo_shop(self, options: dict[str, Any]) -> None:
        from recadmin.catalog.models import Item

        if Item.objects.exists():
            self.stdout.write(f"  catalog has {Item.objects.count():,} items: demo shop not generated again")
            return
        call_command(
            "generate_demo_shop",
            items=options["items"],
            customers=options["customers"],
            seed=options["seed"],
            stdout=self.stdout,
            stderr=self.stderr,
        )

    def _torchserve(self) -> Any:
        from recadmin.modelops.torchserve import (
            TorchServeConfig,
            TorchServeError,
            TorchServeUnavailable,
            get_client,
            torchserve_start,
        )

        config = TorchServeConfig.from_settings()
        try:
            if get_client(config).ping(timeout=2):
                self.stdout.write(f"  already running at {config.management_url}")
                return None
        except (TorchServeError, TorchServeUnavailable):
            pass
        try:
            handle = torchserve_start(config, ready_timeout=120)
        except TorchServeUnavailable as exc:
            raise CommandError(f"TorchServe did not start: {exc.message}") from exc
        self.stdout.write(
            f"  started (pid {handle.pid}) in {handle.started_in:.1f}s; inference {config.inference_url}, "
            f"management {config.management_url}, token auth {'on' if config.token_auth else 'off'}"
        )
        return handle

    def _model(self, options: dict[str, Any]) -> Any:
        from tqdm import tqdm

        from recadmin.modelops.models import TrainingRunStatus
        from recadmin.modelops.selectors import model_version_default
        from recadmin.modelops.services import models_sync_torchserve, training_run_create, training_run_execute

        default = model_version_default(name=settings.RECOMMENDER_MODEL_NAME)
        if default is not None and not options["retrain"]:
            report = models_sync_torchserve(name=settings.RECOMMENDER_MODEL_NAME)
            self.stdout.write(f"  default version {default.version} ({default.kind}); {report.summary()}")
            return default

        params: dict[str, Any] = {"seed": options["seed"]}
        if options["kind"] in EPOCH_KINDS:
            params["epochs"] = options["epochs"] or QUICK_EPOCHS
        run = training_run_create(kind=options["kind"], params=params, trigger="quickstart", enqueue=False)
        bar = tqdm(total=100, unit="%", desc="training", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")

        def progress(percent: float, stage: str) -> None:
            bar.n = min(100.0, max(bar.n, percent))
            bar.set_postfix_str(stage)
            bar.refresh()

        try:
            run = training_run_execute(run=run, progress=progress)
        finally:
            bar.close()
        if run.status != TrainingRunStatus.SUCCEEDED:
            raise CommandError(f"Training run #{run.pk} {run.status} at '{run.stage}': {run.error}")
        version = run.model_versions.order_by("-version").first()
        metrics = (run.metrics or {}).get("test") or {}
        self.stdout.write(f"  run #{run.pk} succeeded; test metrics: {_fmt_metrics(metrics)}")
        default = model_version_default(name=settings.RECOMMENDER_MODEL_NAME)
        if default is not None:
            self.stdout.write(f"  default version: {default.name} v{default.version}")
        return default or version

    def _summary(
        self, base: str, username: str, password: str, raw_key: str, version: Any, customer: str, seconds: float
    ) -> None:
        self._step(f"Ready in {seconds:.0f}s")
        model = f"{version.name} v{version.version}" if version is not None else "none"
        self.stdout.write(
            f"  admin        {base}/admin/   user {username}  password {password}\n"
            f"  API docs     {base}/api/docs/\n"
            f"  API key      {raw_key}\n"
            f"  model        {model}\n"
            f"  preview      {base}{reverse('admin:serving_preview')}\n"
            f"  try it       curl -H 'Authorization: Bearer {raw_key}' "
            f"'{base}/api/v1/recommendations?customer={customer}&scene=home&n=10'"
        )

    def _serve(self, options: dict[str, Any], torchserve: Any, raw_key: str) -> None:
        # One worker process with threads by default: without REDIS_URL the cache (recent history,
        # rule sets) is per process, so several workers would each see a different history.
        workers = options["workers"] if settings.REDIS_URL else 1
        command = [
            sys.executable, "-m", "gunicorn", "recadmin.wsgi:application",
            # Metrics directory, and the in-process scheduler (served-log drain, TorchServe re-sync,
            # trending lists, nightly retraining) in the worker: there is no beat without Redis.
            "--config", "python:recadmin.gunicorn_conf",
            "--bind", f"{options['host']}:{options['port']}",
            "--workers", str(workers), "--threads", "8", "--timeout", "60",
            "--access-logfile", "-",
        ]  # fmt: skip
        self.stdout.write(self.style.SUCCESS("\nServing; Ctrl-C stops the server and the TorchServe it started."))
        server = subprocess.Popen(command)
        simulator = None
        if options["simulate"]:
            from recadmin.events.simulation.background import BackgroundSimulation

            simulator = BackgroundSimulation(
                host=options["host"], port=options["port"], key=raw_key, seconds=options["simulate_seconds"],
                rate=options["simulate_rate"], shop_seed=options["seed"], shop_items=options["items"],
                shop_customers=options["customers"],
            )  # fmt: skip
            simulator.start()
        try:
            server.wait()
        except KeyboardInterrupt:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        finally:
            if simulator is not None:
                simulator.stop()
            if torchserve is not None:
                torchserve.stop()
                self.stdout.write("TorchServe stopped.")


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    # The evaluator's keys (training.metrics); absent ones are simply not shown.
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in ("NDCG@10", "HR@10") if k in metrics) or "n/a"
