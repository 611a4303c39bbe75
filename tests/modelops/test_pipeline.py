"""The training task end to end on a small generated shop, against a real TorchServe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recadmin.modelops.models import ModelVersion, ModelVersionStatus, TrainingRun
from recadmin.modelops.selectors import default_model_get
from recadmin.modelops.services import training_run_create, training_run_execute
from tests.fixtures.torchserve import TorchServeInstance

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

QUICK_SASREC = {"max_epochs": 2, "hidden": 16, "max_len": 10, "batch_size": 64, "seed": 1}


def test_the_task_trains_archives_registers_and_promotes_a_first_version_that_serves(
    make_shop: Callable[..., None],
    torchserve_settings: TorchServeInstance,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_shop()
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(kind="sasrec", params=QUICK_SASREC, trigger="api")
    run.refresh_from_db()

    assert run.status == "succeeded", (run.error, run.log_tail)
    assert run.progress == 100.0
    assert run.celery_task_id
    version = ModelVersion.objects.get(training_run=run)
    assert version.status == ModelVersionStatus.DEFAULT
    assert version.version == 1
    assert Path(version.archive_path).is_file() and len(version.sha256) == 64
    assert version.num_events == 400 and version.num_users == 40 and version.num_items == 30
    assert 0.0 <= version.valid_metrics["NDCG@10"] <= 1.0
    assert "NDCG@10" in version.test_metrics
    assert "first version" in run.gate_decision
    assert "export" in run.metrics["seconds"]
    # TorchServe has it, as default, and it answers a real request.
    info = torchserve_settings.client.describe("recommender", "1")[0]
    assert info.is_default and info.ready_workers == 1
    answer = torchserve_settings.client.predict("recommender", {"history": ["sku-001", "sku-002"], "k": 5})
    items = [row["item"] for row in (answer if isinstance(answer, list) else answer["items"])]
    assert len(items) == 5 and not {"sku-001", "sku-002"} & set(items)
    assert default_model_get().version == 1


@pytest.mark.parametrize("kind", ["cf", "itemknn", "hybrid"])
def test_every_model_kind_goes_through_the_pipeline(
    kind: str, make_shop: Callable[..., None], torchserve_settings: TorchServeInstance
) -> None:
    make_shop()
    run = training_run_execute(run=training_run_create(kind=kind, enqueue=False))
    assert run.status == "succeeded", (run.error, run.log_tail[-2000:])
    version = ModelVersion.objects.get(training_run=run)
    assert version.kind == kind and version.status == ModelVersionStatus.DEFAULT
    answer = torchserve_settings.client.predict("recommender", {"similar_to": "sku-003", "k": 3})
    assert len(answer if isinstance(answer, list) else answer["items"]) == 3


def test_the_gate_keeps_a_worse_model_registered_but_not_default(
    make_shop: Callable[..., None], make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_shop()
    make_version(1, status="default", ndcg=0.99)  # an unbeatable incumbent

    run = training_run_create(kind="pop", params={}, enqueue=False)
    run = training_run_execute(run=run)

    assert run.status == "succeeded", run.error
    new = ModelVersion.objects.get(training_run=run)
    assert new.version == 2
    assert new.status == ModelVersionStatus.REGISTERED
    assert "Kept registered, not default" in run.gate_decision and "0.99" in run.gate_decision
    assert torchserve_settings.client.default_version("recommender") == "1"
    assert default_model_get().version == 1


def test_the_gate_promotes_within_the_configured_tolerance(
    make_shop: Callable[..., None],
    make_version: Callable[..., ModelVersion],
    torchserve_settings: TorchServeInstance,
    settings: Any,
) -> None:
    make_shop()
    make_version(1, status="default", ndcg=0.99)
    settings.PROMOTION_TOLERANCE = 1.0

    run = training_run_execute(run=training_run_create(kind="pop", enqueue=False))

    assert ModelVersion.objects.get(training_run=run).status == ModelVersionStatus.DEFAULT
    assert torchserve_settings.client.default_version("recommender") == "2"


def test_a_progress_callback_sees_every_stage_in_order(
    make_shop: Callable[..., None], torchserve_settings: TorchServeInstance
) -> None:
    make_shop()
    seen: list[tuple[float, str]] = []
    run = training_run_create(kind="sasrec", params=QUICK_SASREC, enqueue=False)
    training_run_execute(run=run, progress=lambda percent, stage: seen.append((percent, stage)))

    stages = [stage for _, stage in seen]
    assert stages[0] == "exporting events"
    for expected in ("training epoch 1/2", "training epoch 2/2", "evaluating", "archiving", "promotion gate"):
        assert any(stage.startswith(expected) for stage in stages), (expected, stages)
    assert any(stage.startswith("registering v1") for stage in stages)
    percents = [percent for percent, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0


def test_too_few_events_fail_in_the_export_stage_with_a_reason(db: None) -> None:
    run = training_run_execute(run=training_run_create(kind="pop", enqueue=False))
    assert run.status == "failed"
    assert run.failed_stage == "exporting"
    assert "at least 20 are needed" in run.error
    assert not ModelVersion.objects.exists()


def test_an_unreachable_torchserve_fails_the_run_in_registering_and_leaves_no_version_behind(
    make_shop: Callable[..., None], settings: Any, tmp_path: Path
) -> None:
    from recadmin.modelops.torchserve import free_port

    make_shop()
    settings.MODEL_STORE = tmp_path
    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 1.0
    settings.TORCHSERVE_TOKEN_AUTH = False

    run = training_run_execute(run=training_run_create(kind="pop", enqueue=False))

    assert run.status == "failed"
    assert run.failed_stage == "registering"
    assert "TorchServe unavailable" in run.error and "did not answer" in run.error
    version = ModelVersion.objects.get(training_run=run)
    assert version.status == ModelVersionStatus.FAILED
    assert run.finished_at is not None


def test_a_transient_outage_while_registering_is_retried_from_the_built_archive(
    make_shop: Callable[..., None],
    torchserve_settings: TorchServeInstance,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the Celery task does on a worker: the first attempt meets a TorchServe that is down and
    hands the run back for a retry; the retry registers the same archive without training again."""
    from recadmin.core.errors import ServiceUnavailable
    from recadmin.modelops import pipeline
    from recadmin.modelops.torchserve import free_port

    make_shop()
    trained: list[int] = []
    real_train = pipeline.train_from_arrays

    def counting_train(**kwargs: Any) -> Any:
        trained.append(1)
        return real_train(**kwargs)

    monkeypatch.setattr(pipeline, "train_from_arrays", counting_train)
    real_url = settings.TORCHSERVE_MANAGEMENT_URL
    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    run = training_run_create(kind="pop", enqueue=False)

    with pytest.raises(ServiceUnavailable):
        training_run_execute(run=run, retry_transient=True)
    run.refresh_from_db()
    assert run.status == "queued" and run.stage.startswith("waiting to retry registering")
    built = ModelVersion.objects.get(training_run=run)
    assert built.status == ModelVersionStatus.BUILT

    settings.TORCHSERVE_MANAGEMENT_URL = real_url
    settings.TORCHSERVE_TIMEOUT = 10.0
    run = training_run_execute(run=run, retry_transient=True)

    assert run.status == "succeeded", run.error
    assert list(ModelVersion.objects.filter(training_run=run).values_list("pk", "status")) == [(built.pk, "default")]
    assert len(trained) == 1, "the retry must not train again"
    assert torchserve_settings.client.default_version("recommender") == "1"


def test_in_process_the_task_fails_the_run_at_once_when_torchserve_is_down(
    make_shop: Callable[..., None], settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    from recadmin.modelops.torchserve import free_port

    make_shop()
    settings.MODEL_STORE = tmp_path
    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    settings.TORCHSERVE_TOKEN_AUTH = False

    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(kind="pop")
    run.refresh_from_db()

    assert run.status == "failed" and run.failed_stage == "registering"
    assert ModelVersion.objects.get(training_run=run).status == ModelVersionStatus.FAILED


def test_a_bad_archive_fails_registration_with_torchserves_reason(
    make_shop: Callable[..., None], torchserve_settings: TorchServeInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .mar TorchServe cannot load (here: a checkpoint whose weights are garbage) must fail the
    run in the registering stage, promptly, with nothing left registered."""
    from recadmin.modelops import pipeline

    make_shop()
    real_build = pipeline._build_archive

    def corrupt_then_build(*, version: ModelVersion, outcome: Any) -> tuple[Path, str]:
        (outcome.checkpoint_dir / "model.pt").write_bytes(b"not a torch file")
        return real_build(version=version, outcome=outcome)

    monkeypatch.setattr(pipeline, "_build_archive", corrupt_then_build)
    run = training_run_execute(run=training_run_create(kind="pop", enqueue=False))

    assert run.status == "failed" and run.failed_stage == "registering", run.error
    assert run.error.startswith("registering failed:") and "recommender" in run.error, run.error
    assert ModelVersion.objects.get(training_run=run).status == ModelVersionStatus.FAILED
    assert torchserve_settings.client.list_models() == []


def test_a_cancelled_queued_run_is_not_executed(db: None) -> None:
    from recadmin.modelops.services import training_run_cancel

    run = training_run_create(kind="pop", enqueue=False)
    training_run_cancel(run=run)
    run = training_run_execute(run=run)
    assert run.status == "cancelled"
    assert not TrainingRun.objects.filter(status="running").exists()


def test_an_early_stopped_run_says_so_instead_of_jumping_from_an_epoch_count_to_done(
    make_shop: Callable[..., None], torchserve_settings: TorchServeInstance
) -> None:
    make_shop()
    seen: list[str] = []
    params = {**QUICK_SASREC, "max_epochs": 300, "patience": 1}
    run = training_run_create(kind="sasrec", params=params, enqueue=False)
    run = training_run_execute(run=run, progress=lambda percent, stage: seen.append(stage))

    assert run.status == "succeeded", run.error
    epochs = run.metrics["epochs"]
    assert epochs < 300
    assert f"stopped early at epoch {epochs} of 300" in run.metrics["stopped"]
    assert any(stage.startswith(f"stopped early at epoch {epochs} of 300") for stage in seen), seen
    assert "stopped early" in run.stage and run.progress == 100.0
