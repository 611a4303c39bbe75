from __future__ import annotations

import pytest

from recadmin.modelops.services import PARAM_SPECS, training_run_create
from recadmin.modelops.trainer import model_params_for
from training.models import MODEL_KINDS, build_model


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_parameter_a_person_may_set_is_one_the_model_takes(kind: str) -> None:
    """A name in PARAM_SPECS that the model does not know would be accepted by the API and then
    ignored (or refused only when the run starts)."""
    model = build_model(kind, 5)
    assert set(PARAM_SPECS[kind]) <= set(model.params), set(PARAM_SPECS[kind]) - set(model.params)


@pytest.mark.django_db
def test_a_sasrec_run_takes_the_new_item_settings() -> None:
    params = {"new_items": "attributes", "new_item_weight": 5.0, "id_dropout": 0.1}
    run = training_run_create(kind="sasrec", params={**params, "seed": 3}, enqueue=False)
    assert run.params == {**params, "seed": 3}
    built = model_params_for("sasrec", run.params)
    assert {k: built[k] for k in params} == params and "seed" not in built
