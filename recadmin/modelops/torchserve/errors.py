"""TorchServe's failures as the project's errors (recadmin.core.errors): what a caller catches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recadmin.core.errors import ApplicationError, Conflict, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from recadmin.modelops.torchserve.config import TorchServeConfig

_TRANSIENT_STATUS = frozenset({502, 503, 504})
# 400s of the management API (bad parameters, unknown version), as opposed to a handler's 400.
_MANAGEMENT_400_TYPES = frozenset({"BadRequestException", "InvalidModelVersionException", "InvalidKeyException"})


class TorchServeError(ApplicationError):
    """TorchServe answered but refused: the message is TorchServe's own."""

    status_code = 502
    default_message = "TorchServe rejected the request."

    def __init__(
        self,
        message: str | None = None,
        extra: dict[str, Any] | None = None,
        *,
        ts_status: int | None = None,
        ts_type: str | None = None,
    ) -> None:
        extra = dict(extra or {})
        if ts_status is not None:
            extra["torchserve_status"] = ts_status
        if ts_type:
            extra["torchserve_type"] = ts_type
        self.ts_status = ts_status
        self.ts_type = ts_type
        super().__init__(message, extra)


class ModelNotRegistered(TorchServeError, NotFound):
    status_code = 404
    default_message = "TorchServe has no such model or version."


class ModelVersionConflict(TorchServeError, Conflict):
    status_code = 409
    default_message = "TorchServe already has this model version."


class DefaultVersionProtected(TorchServeError, Conflict):
    """TorchServe keeps a model's default version while other versions exist: set another
    default first."""

    status_code = 409
    default_message = "The default version cannot be removed while other versions exist."


class PredictionRejected(TorchServeError):
    """The handler refused the request (bad input): a 400 from the model, not a server fault."""

    status_code = 400
    default_message = "The model rejected the request."


class TorchServeAuthError(TorchServeError):
    default_message = "TorchServe refused our token: check TORCHSERVE_KEY_FILE and TORCHSERVE_TOKEN_AUTH."


class TorchServeUnavailable(ServiceUnavailable):
    """TorchServe did not answer (down, overloaded, timed out). Callers may retry later."""

    default_message = "TorchServe is unavailable."


class TorchServeTimeout(TorchServeUnavailable):
    default_message = "TorchServe did not answer within the time budget."


class WorkersNotReady(TorchServeUnavailable):
    default_message = "The model's workers did not become ready in time."


class TorchServeStartError(TorchServeUnavailable):
    default_message = "TorchServe could not be started."


def _ts_message(payload: Any, status: int) -> tuple[str, str | None]:
    if isinstance(payload, dict):
        return str(payload.get("message") or payload), payload.get("type")
    return (str(payload) if payload else f"HTTP {status}"), None


def _error_for(status: int, ts_type: str | None, message: str, config: TorchServeConfig) -> ApplicationError:
    if ts_type == "InvalidKeyException":
        where = f"key file {config.key_file}" if config.token_auth else "token auth is off in our settings"
        return TorchServeAuthError(
            f"TorchServe refused our token ({where}): {message}", ts_status=status, ts_type=ts_type
        )
    if status in _TRANSIENT_STATUS:
        extra = {"torchserve_status": status, "torchserve_type": ts_type}
        return TorchServeUnavailable(f"TorchServe: {message}", extra)
    if status == 404:
        return ModelNotRegistered(message, ts_status=status, ts_type=ts_type)
    if status == 403 and ts_type == "InvalidModelVersionException":
        return DefaultVersionProtected(message, ts_status=status, ts_type=ts_type)
    if status == 409:
        return ModelVersionConflict(message, ts_status=status, ts_type=ts_type)
    if status == 400 and ts_type not in _MANAGEMENT_400_TYPES:
        # What our handler raises as PredictionException(message, 400): the request was bad.
        return PredictionRejected(message, ts_status=status, ts_type=ts_type)
    return TorchServeError(message, ts_status=status, ts_type=ts_type)
