"""The one adapter to TorchServe (0.12): management API, inference API, key file, process.

Nothing else in the project knows TorchServe's URLs, JSON shapes, key file or command line: they
call the typed functions here and get dataclasses back or one of the exceptions below. TorchServe
is in limited maintenance, so this package is the seam where another model server can be swapped in.

Usable without Django: build a `TorchServeConfig` by hand (bench scripts, the test fixture) or with
`TorchServeConfig.from_settings()` inside the project.

Modules: `errors` (what callers catch), `config` (where a TorchServe is), `client` (management and
inference APIs, one pool per process), `fast` (the hot path's hand-parsed HTTP/1.1), `process`
(start, stop, status of a local TorchServe), `contract` (the handler's request and answer shapes,
MAX_K). Everything importers use is re-exported here.
"""

from __future__ import annotations

from recadmin.modelops.torchserve.client import (
    ModelSummary,
    ModelVersionInfo,
    Registration,
    TorchServeClient,
    WorkerInfo,
    get_client,
)
from recadmin.modelops.torchserve.config import (
    BASE_PROPERTIES,
    KEY_FILE_NAME,
    LOG_CONFIG,
    PID_FILE_NAME,
    TorchServeConfig,
    config_on_free_ports,
    free_port,
)
from recadmin.modelops.torchserve.contract import MAX_K, history_request, ranked_answer, similar_request
from recadmin.modelops.torchserve.errors import (
    DefaultVersionProtected,
    ModelNotRegistered,
    ModelVersionConflict,
    PredictionRejected,
    TorchServeAuthError,
    TorchServeError,
    TorchServeStartError,
    TorchServeTimeout,
    TorchServeUnavailable,
    WorkersNotReady,
)
from recadmin.modelops.torchserve.process import (
    TorchServeHandle,
    TorchServeStatus,
    read_pid,
    read_properties,
    render_properties,
    torchserve_start,
    torchserve_status,
    torchserve_stop,
)

__all__ = [
    "BASE_PROPERTIES",
    "KEY_FILE_NAME",
    "LOG_CONFIG",
    "MAX_K",
    "PID_FILE_NAME",
    "DefaultVersionProtected",
    "ModelNotRegistered",
    "ModelSummary",
    "ModelVersionConflict",
    "ModelVersionInfo",
    "PredictionRejected",
    "Registration",
    "TorchServeAuthError",
    "TorchServeClient",
    "TorchServeConfig",
    "TorchServeError",
    "TorchServeHandle",
    "TorchServeStartError",
    "TorchServeStatus",
    "TorchServeTimeout",
    "TorchServeUnavailable",
    "WorkerInfo",
    "WorkersNotReady",
    "config_on_free_ports",
    "free_port",
    "get_client",
    "history_request",
    "ranked_answer",
    "read_pid",
    "read_properties",
    "render_properties",
    "similar_request",
    "torchserve_start",
    "torchserve_status",
    "torchserve_stop",
]
