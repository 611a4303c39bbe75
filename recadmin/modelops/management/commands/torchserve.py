"""`manage.py torchserve start|stop|status`: the local TorchServe as a background process.

It runs with handlers/config.properties (addresses, model store and token auth from the settings),
its working directory, logs, key file and pid file in the directory of TORCHSERVE_KEY_FILE
(var/torchserve by default).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recadmin.modelops.torchserve import (
    TorchServeConfig,
    TorchServeStartError,
    read_pid,
    torchserve_start,
    torchserve_status,
    torchserve_stop,
)


class Command(BaseCommand):
    help = "Start, stop or show the local TorchServe (models loaded, workers ready)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["start", "stop", "status"])
        parser.add_argument(
            "--models",
            nargs="*",
            default=[],
            help="start: archives to load at start, as NAME=FILE.mar from the model store (default: none).",
        )
        parser.add_argument("--timeout", type=float, default=60.0, help="start/stop: seconds to wait (default 60).")

    def handle(self, *args: Any, **options: Any) -> None:
        config = TorchServeConfig.from_settings()
        action = options["action"]
        if action == "start":
            self._start(config, options["models"], options["timeout"])
        elif action == "stop":
            pid = read_pid(config)
            if torchserve_stop(config, timeout=options["timeout"]):
                self.stdout.write(self.style.SUCCESS(f"TorchServe (pid {pid}) stopped."))
            else:
                self.stdout.write(f"TorchServe was not running from {config.run_dir}.")
        else:
            self._status(config)

    def _start(self, config: TorchServeConfig, models: list[str], timeout: float) -> None:
        try:
            handle = torchserve_start(config, models=models, ready_timeout=timeout)
        except TorchServeStartError as exc:
            raise CommandError(exc.message) from exc
        auth = f"token auth on, keys in {config.key_file}" if config.token_auth else "token auth OFF"
        self.stdout.write(
            self.style.SUCCESS(f"TorchServe started (pid {handle.pid}) in {handle.started_in:.1f}s.")
            + f"\n  inference  {config.inference_url}\n  management {config.management_url}"
            + f"\n  metrics    {config.metrics_url}\n  model store {config.model_store}\n  {auth}"
            + f"\n  logs       {handle.run_dir / 'logs'}"
        )
        self._status(config)

    def _status(self, config: TorchServeConfig) -> None:
        status = torchserve_status(config)
        where = f"pid {status.pid}" if status.pid else "not started by this project"
        if not status.reachable:
            raise CommandError(f"TorchServe at {config.management_url} is not answering ({where}): {status.error}")
        self.stdout.write(f"TorchServe at {config.management_url}: up ({where}).")
        if not status.versions:
            self.stdout.write("  no models registered")
        for v in status.versions:
            ready = "ready" if v.is_ready else "NOT READY"
            self.stdout.write(
                f"  {v.name} v{v.version}{' (default)' if v.is_default else ''}: "
                f"{v.ready_workers}/{len(v.workers)} workers {ready}, batch {v.batch_size}, {v.mar_url}"
            )
