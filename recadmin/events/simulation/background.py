"""`manage.py simulate_traffic` in a subprocess, started once a server answers: what
`manage.py quickstart --simulate` runs so that a new user sees the dashboard fill up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request

SERVER_WAIT_SECONDS = 120


class BackgroundSimulation:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        key: str,
        seconds: float,
        rate: float,
        shop_seed: int,
        shop_items: int,
        shop_customers: int,
    ) -> None:
        wildcard = host in {"0.0.0.0", "::", ""}
        target = "127.0.0.1" if wildcard else host
        self.base = f"http://[{target}]:{port}" if ":" in target else f"http://{target}:{port}"
        self.command = [
            sys.executable, "-m", "django", "simulate_traffic",
            "--url", self.base, "--key", key, "--seconds", str(seconds), "--rate", str(rate),
            "--shop-seed", str(shop_seed), "--shop-items", str(shop_items),
            "--shop-customers", str(shop_customers), "--no-progress",
        ]  # fmt: skip
        if not wildcard:
            # The server quickstart itself just started, on the address it was told to bind.
            self.command.append("--allow-remote")
        self.process: subprocess.Popen[bytes] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulate-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + SERVER_WAIT_SECONDS
        while not self._stopped.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2):
                    break
            except (OSError, ValueError):
                self._stopped.wait(1)
        if self._stopped.is_set():
            return
        env = {**os.environ}
        env.setdefault("DJANGO_SETTINGS_MODULE", "recadmin.settings")
        sys.stdout.write(f"Simulated visitors started against {self.base} (manage.py simulate_traffic).\n")
        sys.stdout.flush()
        self.process = subprocess.Popen(self.command, env=env)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
