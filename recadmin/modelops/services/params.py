"""The parameters of a training run: what a person may set per model kind, with their bounds, and
the pipeline's own options. Anything else is refused with a ValidationError naming the parameter."""

from __future__ import annotations

from typing import Any

from recadmin.core.errors import ValidationError
from recadmin.modelops.models import ModelKind
from recadmin.modelops.services.common import MAX_WORKERS

# The parameters a person may set from the admin or the API, per kind, with their bounds; the
# names are those of the models in `training/models` (their DEFAULTS). Anything else in `params`
# is refused: a typo must not silently train with the defaults. Strings list their choices.
_SASREC_SPEC: dict[str, tuple[Any, Any, Any]] = {
    "max_epochs": (int, 1, 1000),
    "hidden": (int, 8, 1024),
    "blocks": (int, 1, 8),
    "heads": (int, 1, 16),
    "ffn_mult": (int, 1, 8),
    "max_len": (int, 2, 1000),
    "dropout": (float, 0.0, 0.9),
    "lr": (float, 1e-6, 1.0),
    "weight_decay": (float, 0.0, 1.0),
    "batch_size": (int, 1, 65536),
    "patience": (int, 1, 1000),
    "max_seconds": (float, 1.0, 7 * 86400.0),
    "loss": (str, ("full", "sampled"), None),
    "num_negatives": (int, 1, 100000),
    "use_attributes": (bool, None, None),
    # New items (no events yet): how they are represented, and how much a validation hit on
    # one counts when their scale is chosen; above 1 buys them exposure with the established
    # items' accuracy (README, "Cold items").
    "new_items": (str, ("content", "attributes"), None),
    "new_item_weight": (float, 0.0, 100.0),
    "id_dropout": (float, 0.0, 0.9),
}
PARAM_SPECS: dict[str, dict[str, tuple[Any, Any, Any]]] = {
    ModelKind.SASREC: _SASREC_SPEC,
    # SASRec's training knobs apply to both of its SASRecs (the main model and the content expert).
    ModelKind.HYBRID: {
        # (training.models.hybrid.SHARED, named here so the web processes never import torch)
        **{
            k: _SASREC_SPEC[k]
            for k in (
                "max_epochs",
                "hidden",
                "blocks",
                "heads",
                "ffn_mult",
                "max_len",
                "dropout",
                "lr",
                "weight_decay",
                "batch_size",
                "patience",
                "max_seconds",
            )
        },
        # The share of trained items that pose as new in validation, where the mixing is chosen.
        "posing_share": (float, 0.01, 0.5),
        # How many standard errors validation needs that the established items' customers do not
        # lose (1.64 by default; 0 holds them at the before figure exactly).
        "hold_z": (float, 0.0, 5.0),
    },
    ModelKind.CF: {  # EASE
        "l2": (float, 0.0, 1e7),
        "neighbours": (int, 1, 10000),
        "max_items": (int, 10, 200000),
        "history_decay": (float, 0.0, 1.0),
        "max_history": (int, 1, 10000),
        "dims": (int, 2, 1024),
    },
    ModelKind.ITEMKNN: {
        "neighbours": (int, 1, 10000),
        "alpha": (float, 0.0, 1.0),
        "shrink": (float, 0.0, 1e6),
        "history_decay": (float, 0.0, 1.0),
        "max_history": (int, 1, 10000),
        "dims": (int, 2, 1024),
    },
    ModelKind.POP: {
        "half_life_days": (float, 0.001, 3650.0),
        "use_event_weights": (bool, None, None),
    },
    ModelKind.RANKER: {  # ESMM (training/ranker/esmm.py), trained on the served impressions
        "embedding_dim": (int, 2, 256),
        "dropout": (float, 0.0, 0.9),
        "ctcvr_weight": (float, 0.0, 100.0),
        "lr": (float, 1e-6, 1.0),
        "weight_decay": (float, 0.0, 1.0),
        "batch_size": (int, 1, 65536),
        "max_epochs": (int, 1, 1000),
        "patience": (int, 1, 1000),
        "max_seconds": (float, 1.0, 7 * 86400.0),
        "impression_days": (float, 0.01, 3650.0),
        "min_impressions": (int, 1, 10**9),
    },
}
PARAM_ALIASES = {"epochs": "max_epochs"}
# Pipeline options accepted beside model parameters (not passed to the model).
PIPELINE_OPTIONS: dict[str, tuple[Any, Any, Any]] = {
    "seed": (int, 0, 2**31 - 1),
    "test_days": (float, 0.01, 3650.0),
    "valid_days": (float, 0.01, 3650.0),
    "holdout_fraction": (float, 0.01, 0.45),
    "min_events": (int, 1, 10**9),
    "workers": (int, 1, MAX_WORKERS),
}


def _validate_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValidationError("Parameters must be a JSON object.", field="params")
    specs = {**PARAM_SPECS.get(kind, {}), **PIPELINE_OPTIONS}
    cleaned: dict[str, Any] = {}
    for given, value in params.items():
        # Friendly aliases for the commonest setting, mapped to the model's own name.
        name = PARAM_ALIASES.get(given, given) if PARAM_ALIASES.get(given) in specs else given
        if value is None or value == "":
            continue
        if name not in specs:
            allowed = ", ".join(sorted(specs))
            raise ValidationError(f"Unknown parameter '{name}' for {kind}. Allowed: {allowed}.", field=f"params.{name}")
        kind_of, low, high = specs[name]
        if kind_of is str:
            if value not in low:
                raise ValidationError(f"Parameter '{name}' must be one of: {', '.join(low)}.", field=f"params.{name}")
            cleaned[name] = value
            continue
        try:
            if kind_of is bool:
                if not isinstance(value, bool):
                    raise TypeError
                coerced: Any = value
            elif kind_of is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                coerced = int(value)
            else:
                if isinstance(value, bool):
                    raise TypeError
                coerced = float(value)
        except (TypeError, ValueError) as exc:
            expected = {int: "an integer", bool: "true or false"}.get(kind_of, "a number")
            raise ValidationError(f"Parameter '{name}' must be {expected}.", field=f"params.{name}") from exc
        if kind_of is not bool and not (low <= coerced <= high):
            raise ValidationError(f"Parameter '{name}' must be between {low} and {high}.", field=f"params.{name}")
        cleaned[name] = coerced
    return cleaned


def training_params_validate(*, kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The cleaned parameters for `kind`, or ValidationError naming the offending one."""
    return _validate_params(kind, params)
