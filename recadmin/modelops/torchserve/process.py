"""Starting, stopping and inspecting a local TorchServe process (tests, quickstart, the dev server)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recadmin.modelops.torchserve.client import ModelVersionInfo, TorchServeClient, _clients, _param, get_client
from recadmin.modelops.torchserve.config import (
    BASE_PROPERTIES,
    KEY_FILE_NAME,
    LOG_CONFIG,
    PID_FILE_NAME,
    TorchServeConfig,
)
from recadmin.modelops.torchserve.errors import TorchServeError, TorchServeStartError, TorchServeUnavailable

logger = logging.getLogger("recadmin.modelops.torchserve")

_TS_MAIN_CLASS = "org.pytorch.serve.ModelServer"


@dataclass
class TorchServeHandle:
    """A TorchServe process started by `torchserve_start`."""

    config: TorchServeConfig
    pid: int
    run_dir: Path
    config_file: Path
    log_file: Path
    started_in: float = 0.0  # seconds from launch until the management API answered
    models: tuple[str, ...] = field(default_factory=tuple)

    @property
    def client(self) -> TorchServeClient:
        return get_client(self.config)

    def is_running(self) -> bool:
        return _is_torchserve_pid(self.pid)

    def stop(self, *, timeout: float = 30.0) -> bool:
        return torchserve_stop(self.config, timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines) + _tail(self.run_dir / "logs" / "ts_log.log", lines)


@dataclass(frozen=True)
class TorchServeStatus:
    running: bool
    pid: int | None
    reachable: bool
    versions: tuple[ModelVersionInfo, ...] = ()
    error: str | None = None


def read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def render_properties(
    config: TorchServeConfig, *, base: Path = BASE_PROPERTIES, extra: dict[str, Any] | None = None
) -> str:
    """The repo's config.properties with the addresses, store and auth of `config`."""
    props = read_properties(base) if Path(base).is_file() else {}
    props.update(
        {
            "inference_address": config.inference_url,
            "management_address": config.management_url,
            "metrics_address": config.metrics_url,
            "grpc_inference_address": _host_of(config.inference_url),
            "grpc_management_address": _host_of(config.management_url),
            "grpc_inference_port": str(config.grpc_inference_port),
            "grpc_management_port": str(config.grpc_management_port),
            "model_store": str(Path(config.model_store).resolve()),
            "enable_model_api": "true",
            "disable_token_authorization": "false" if config.token_auth else "true",
        }
    )
    props.update({k: _param(v) for k, v in (extra or {}).items()})
    lines = ["# Written by recadmin.modelops.torchserve.torchserve_start from handlers/config.properties."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def read_pid(config: TorchServeConfig) -> int | None:
    path = config.run_dir / PID_FILE_NAME
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _is_torchserve_pid(pid) else None


def torchserve_start(
    config: TorchServeConfig,
    *,
    models: Sequence[str] = (),
    base_properties: Path = BASE_PROPERTIES,
    extra_properties: dict[str, Any] | None = None,
    ready_timeout: float = 60.0,
    wait_for_models: bool = True,
    stop_with_parent: bool = False,
) -> TorchServeHandle:
    """Start TorchServe in the background with its cwd in config.run_dir (key file, logs,
    sockets, unpacked models and TorchServe's own pid file all live there, so several instances
    can run side by side), wait until the management API answers, write run_dir/torchserve.pid.

    `models`: names or name=file.mar to load at start ("ALL" for the whole store); with
    wait_for_models, waits until each has a READY worker. stop_with_parent: a tiny watchdog
    kills TorchServe when this process dies without stopping it (a killed test run)."""
    run_dir = config.run_dir.resolve()
    existing = read_pid(config)
    if existing is not None:
        raise TorchServeStartError(f"TorchServe is already running from {run_dir} (pid {existing}).")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise TorchServeStartError("Java 17 is needed to run TorchServe and was not found on PATH.")
    store = Path(config.model_store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "tmp"
    logs = run_dir / "logs"
    for d in (run_dir, tmp, logs):
        d.mkdir(parents=True, exist_ok=True)
    (run_dir / KEY_FILE_NAME).unlink(missing_ok=True)  # a stale key would pass for a live one
    config_file = run_dir / "config.properties"
    config_file.write_text(render_properties(config, base=base_properties, extra=extra_properties))
    cmd = [
        _torchserve_bin(),
        "--start",
        "--ncs",
        "--ts-config",
        str(config_file),
        "--model-store",
        str(store),
        "--enable-model-api",
    ]
    if LOG_CONFIG.is_file():
        cmd += ["--log-config", str(LOG_CONFIG)]
    if not config.token_auth:
        cmd.append("--disable-token-auth")
    if models:
        cmd += ["--models", *models]
    env = dict(os.environ)
    env.pop("TS_CONFIG_FILE", None)
    # Workers must import the model code the archive carries (TorchServe puts the unpacked model
    # dir on their path), never a checkout that a PYTHONPATH would put in front of it.
    env.pop("PYTHONPATH", None)
    # The CLI keeps its pid file in the temp dir and the JVM its sockets and unpacked archives:
    # one private temp dir per instance keeps instances (tests, dev server) apart.
    env.update({"TMPDIR": str(tmp), "TEMP": str(tmp), "LOG_LOCATION": str(logs), "METRICS_LOCATION": str(logs)})
    log_file = run_dir / "torchserve.out"
    started = time.monotonic()
    with open(log_file, "ab") as out:
        cli = subprocess.Popen(
            cmd,
            cwd=run_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        cli.wait(timeout=30)
    except subprocess.TimeoutExpired:
        cli.kill()
        raise TorchServeStartError(f"torchserve --start hung; see {log_file}") from None
    pid = _read_int(tmp / ".model_server.pid")
    if cli.returncode != 0 or pid is None:
        raise TorchServeStartError(f"torchserve --start failed (exit {cli.returncode}): {_tail(log_file, 20)}")
    (run_dir / PID_FILE_NAME).write_text(f"{pid}\n")
    if stop_with_parent:
        subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    handle = TorchServeHandle(
        config=config, pid=pid, run_dir=run_dir, config_file=config_file, log_file=log_file, models=tuple(models)
    )
    client = TorchServeClient(replace(config, retries=0))
    deadline = started + ready_timeout
    try:
        while True:
            if not _is_torchserve_pid(pid):
                raise TorchServeStartError(f"TorchServe exited during start-up: {handle.log_tail(20)}")
            try:
                client._request("GET", "management", "/models", timeout=1.0, retries=0)
                break
            except (TorchServeUnavailable, TorchServeError):
                pass
            if time.monotonic() > deadline:
                raise TorchServeStartError(
                    f"TorchServe did not answer within {ready_timeout:.0f}s: {handle.log_tail(20)}"
                )
            time.sleep(0.05)
        handle.started_in = time.monotonic() - started
        if models and wait_for_models:
            for spec in models:
                if spec != "ALL":
                    name = spec.split("=", 1)[0]
                    client.wait_until_ready(name, timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        torchserve_stop(config, timeout=10)
        raise
    finally:
        client.close()
    logger.info("TorchServe pid %s up in %.2fs at %s", pid, handle.started_in, config.management_url)
    return handle


# Runs as `python -c _WATCHDOG <parent pid> <torchserve pid>`: polls both; when the parent is gone
# first, kills TorchServe's process group (its own session, see torchserve_start).
_WATCHDOG = """
import os, signal, sys, time
parent, pid = int(sys.argv[1]), int(sys.argv[2])
pgid = os.getpgid(pid)
def alive(p):
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    return True
while alive(pid):
    if not alive(parent):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    time.sleep(1)
"""


def torchserve_stop(config: TorchServeConfig, *, timeout: float = 30.0, graceful: bool = True) -> bool:
    """Stop the TorchServe started from config.run_dir: SIGTERM (TorchServe stops its workers;
    takes about 2.5 s), then SIGKILL to its process group after `timeout`. graceful=False kills
    at once, as a crash would (tests). False when none was running."""
    run_dir = config.run_dir
    pid = read_pid(config)
    stopped = False
    if pid is not None:
        stopped = True
        try:
            # torchserve_start runs it in a session of its own: the group is TorchServe and its
            # workers only. Never signal our own group.
            pgid: int | None = os.getpgid(pid)
            if pgid == os.getpgrp():
                pgid = None
        except ProcessLookupError:
            pgid = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
        deadline = time.monotonic() + (timeout if graceful else 0)
        while _is_torchserve_pid(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_torchserve_pid(pid) or not graceful:
            if graceful:
                logger.warning("TorchServe pid %s ignored SIGTERM for %.0fs: killing its process group", pid, timeout)
            if pgid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _is_torchserve_pid(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
    for stale in (run_dir / PID_FILE_NAME, run_dir / KEY_FILE_NAME, run_dir / "tmp" / ".model_server.pid"):
        stale.unlink(missing_ok=True)
    # Drop pooled connections to the dead server so the next call fails fast or reconnects.
    for (owner, cfg), client in list(_clients.items()):
        if owner == os.getpid() and cfg.management_url == config.management_url:
            client.close()
    return stopped


def torchserve_status(config: TorchServeConfig) -> TorchServeStatus:
    """Whether our process runs, whether the API answers, and every loaded version with workers."""
    pid = read_pid(config)
    client = get_client(config)
    try:
        versions: list[ModelVersionInfo] = []
        for summary in client.list_models():
            versions += client.describe(summary.name)
    except (TorchServeError, TorchServeUnavailable) as exc:
        return TorchServeStatus(running=pid is not None, pid=pid, reachable=False, error=exc.message)
    return TorchServeStatus(running=pid is not None, pid=pid, reachable=True, versions=tuple(versions))


def _torchserve_bin() -> str:
    local = Path(sys.executable).parent / "torchserve"
    if local.exists():
        return str(local)
    found = shutil.which("torchserve")
    if not found:
        raise TorchServeStartError("The torchserve command is not installed in this environment.")
    return found


def _is_torchserve_pid(pid: int) -> bool:
    import psutil  # TorchServe's own dependency, so present wherever TorchServe is

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return _TS_MAIN_CLASS in proc.cmdline()
    except psutil.Error:
        return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) + "\n"


def _host_of(url: str) -> str:
    return urlsplit(url).hostname or "127.0.0.1"
