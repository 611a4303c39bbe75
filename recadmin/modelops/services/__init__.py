"""Writes of the model registry, by topic: `runs` (record a training run, dispatch it, cancel it,
run the pipeline in this process), `params` (what a run may be given, per kind), `versions`
(promotion, rollback, retirement, workers of a version), `sync` (bring TorchServe in line with the
registry), `schedules` (the nightly retraining and the periodic sync); `common` holds what they
share.

Every TorchServe call goes through `recadmin.modelops.torchserve` (the adapter); every torch import
happens inside `recadmin.modelops.pipeline`, which only the Celery task and the quickstart command
load, so the web process never imports torch.

A test that replaces a name replaces it in the module that looks it up (e.g.
`recadmin.modelops.services.sync.torchserve_client`), not here: these are re-exports.
"""

from __future__ import annotations

from recadmin.modelops.archive import file_sha256
from recadmin.modelops.services.common import MAX_WORKERS, model_name_default
from recadmin.modelops.services.params import (
    PARAM_ALIASES,
    PARAM_SPECS,
    PIPELINE_OPTIONS,
    training_params_validate,
)
from recadmin.modelops.services.runs import (
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    _child_environment,
    training_run_cancel,
    training_run_create,
    training_run_execute,
)
from recadmin.modelops.services.schedules import (
    RETRAINING_TASK,
    SYNC_SCHEDULE_NAME,
    SYNC_TASK,
    retraining_schedule_name,
    retraining_schedule_set,
    torchserve_sync_schedule_ensure,
)
from recadmin.modelops.services.sync import SyncReport, models_sync_torchserve, torchserve_versions_loaded
from recadmin.modelops.services.versions import (
    model_version_lookup,
    model_version_mark_default,
    model_version_next_number,
    model_version_promote,
    model_version_retire,
    model_version_rollback,
    model_version_scale,
    model_version_update,
    torchserve_unregister_quietly,
)

__all__ = [
    "MAX_WORKERS",
    "MODEL_NAME_MAX_LENGTH",
    "MODEL_NAME_PATTERN",
    "PARAM_ALIASES",
    "PARAM_SPECS",
    "PIPELINE_OPTIONS",
    "RETRAINING_TASK",
    "SYNC_SCHEDULE_NAME",
    "SYNC_TASK",
    "SyncReport",
    "_child_environment",
    "file_sha256",
    "model_name_default",
    "model_version_lookup",
    "model_version_mark_default",
    "model_version_next_number",
    "model_version_promote",
    "model_version_retire",
    "model_version_rollback",
    "model_version_scale",
    "model_version_update",
    "models_sync_torchserve",
    "retraining_schedule_name",
    "retraining_schedule_set",
    "torchserve_sync_schedule_ensure",
    "torchserve_unregister_quietly",
    "torchserve_versions_loaded",
    "training_params_validate",
    "training_run_cancel",
    "training_run_create",
    "training_run_execute",
]
