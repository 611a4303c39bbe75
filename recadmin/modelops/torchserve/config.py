"""Where a TorchServe is (addresses, key file, store, timeouts) and the files it is started from."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
#: The repo's config.properties: the defaults every TorchServe we start is based on.
BASE_PROPERTIES = REPO_ROOT / "handlers" / "config.properties"
# TorchServe's log4j2 configuration without per-request lines (see the file for why).
LOG_CONFIG = REPO_ROOT / "handlers" / "log4j2.xml"
PID_FILE_NAME = "torchserve.pid"
KEY_FILE_NAME = "key_file.json"  # TorchServe writes it into its working directory; the name is fixed.


@dataclass(frozen=True)
class TorchServeConfig:
    inference_url: str = "http://127.0.0.1:8080"
    management_url: str = "http://127.0.0.1:8081"
    metrics_url: str = "http://127.0.0.1:8082"
    #: Where TorchServe writes key_file.json: its working directory when we start it.
    key_file: Path = Path("var/torchserve") / KEY_FILE_NAME
    token_auth: bool = True
    timeout: float = 5.0
    register_timeout: float = 300.0
    model_store: Path = Path("model_store")
    model_name: str = "recommender"
    #: TorchServe always starts its gRPC APIs too (unused here, but their ports must be free).
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071
    #: Transient failures are retried this many times (so up to retries + 1 attempts).
    retries: int = 2
    backoff: float = 0.2

    @classmethod
    def from_settings(cls, settings: Any = None) -> TorchServeConfig:
        if settings is None:
            from django.conf import settings as django_settings

            settings = django_settings
        return cls(
            inference_url=str(settings.TORCHSERVE_INFERENCE_URL).rstrip("/"),
            management_url=str(settings.TORCHSERVE_MANAGEMENT_URL).rstrip("/"),
            metrics_url=str(settings.TORCHSERVE_METRICS_URL).rstrip("/"),
            key_file=Path(settings.TORCHSERVE_KEY_FILE),
            token_auth=bool(settings.TORCHSERVE_TOKEN_AUTH),
            timeout=float(settings.TORCHSERVE_TIMEOUT),
            register_timeout=float(settings.TORCHSERVE_REGISTER_TIMEOUT),
            model_store=Path(settings.MODEL_STORE),
            model_name=str(settings.RECOMMENDER_MODEL_NAME),
            # Not in settings.py (nothing of ours talks gRPC); a test or a second instance on the
            # same machine sets them to keep TorchServe's gRPC listeners apart.
            grpc_inference_port=int(getattr(settings, "TORCHSERVE_GRPC_INFERENCE_PORT", 7070)),
            grpc_management_port=int(getattr(settings, "TORCHSERVE_GRPC_MANAGEMENT_PORT", 7071)),
        )

    @property
    def run_dir(self) -> Path:
        """The working directory of a TorchServe we start: key file, pid file, logs, sockets."""
        return Path(self.key_file).parent

    def as_settings(self) -> dict[str, Any]:
        """The Django settings that point the project at this TorchServe (for override_settings)."""
        return {
            "TORCHSERVE_INFERENCE_URL": self.inference_url,
            "TORCHSERVE_MANAGEMENT_URL": self.management_url,
            "TORCHSERVE_METRICS_URL": self.metrics_url,
            "TORCHSERVE_KEY_FILE": str(self.key_file),
            "TORCHSERVE_TOKEN_AUTH": self.token_auth,
            "TORCHSERVE_TIMEOUT": self.timeout,
            "TORCHSERVE_REGISTER_TIMEOUT": self.register_timeout,
            "MODEL_STORE": Path(self.model_store),
            "RECOMMENDER_MODEL_NAME": self.model_name,
            "TORCHSERVE_GRPC_INFERENCE_PORT": self.grpc_inference_port,
            "TORCHSERVE_GRPC_MANAGEMENT_PORT": self.grpc_management_port,
        }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def config_on_free_ports(run_dir: Path, model_store: Path, **overrides: Any) -> TorchServeConfig:
    """A loopback config on three free ports with its key file (and so its cwd) in run_dir."""
    ports = [free_port() for _ in range(5)]
    while len(set(ports)) < 5:
        ports = [free_port() for _ in range(5)]
    return TorchServeConfig(
        inference_url=f"http://127.0.0.1:{ports[0]}",
        management_url=f"http://127.0.0.1:{ports[1]}",
        metrics_url=f"http://127.0.0.1:{ports[2]}",
        grpc_inference_port=ports[3],
        grpc_management_port=ports[4],
        key_file=Path(run_dir) / KEY_FILE_NAME,
        model_store=Path(model_store),
        **overrides,
    )
