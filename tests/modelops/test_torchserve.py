"""The adapter against a real TorchServe serving real archives built with our handler."""

from __future__ import annotations

import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from recadmin.modelops.archive import Archive, archive_build
from recadmin.modelops.torchserve import (
    DefaultVersionProtected,
    ModelNotRegistered,
    ModelVersionConflict,
    ModelVersionInfo,
    PredictionRejected,
    TorchServeClient,
    TorchServeConfig,
    TorchServeError,
    TorchServeTimeout,
    TorchServeUnavailable,
    WorkersNotReady,
    get_client,
)
from tests.fixtures.torchserve import TorchServeInstance

NAME = "recommender"


@pytest.fixture(scope="module")
def archives(trained_checkpoint: Path, torchserve_session: TorchServeInstance) -> dict[str, Archive]:
    """Versions 1 and 2 of the recommender in the test TorchServe's model store."""
    out = {}
    for version, k in (("1", 10), ("2", 20)):
        out[version] = archive_build(
            checkpoint_dir=trained_checkpoint,
            name=NAME,
            version=version,
            model_store=torchserve_session.model_store,
            handler_settings={"default_k": k},
            max_batch_delay=2,
            overwrite=True,
        )
    return out


def test_a_registered_version_is_ready_default_and_serves_predictions(
    torchserve: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    client = torchserve.client
    started = time.monotonic()
    reg = client.register(archives["1"].path, model_name=NAME, initial_workers=1)
    assert (reg.name, reg.version) == (NAME, "1")
    info = client.wait_until_ready(NAME, "1", timeout=60)
    assert time.monotonic() - started < 60
    assert info.is_default and info.ready_workers == 1 and info.mar_url == "recommender-1.mar"
    assert info.batch_size == 8 and info.max_batch_delay == 2  # from the archive's model-config.yaml
    assert [m.name for m in client.list_models()] == [NAME]

    answer = client.predict(NAME, {"history": ["sku-000", "sku-001"], "k": 5, "exclude": ["sku-002"]})
    assert len(answer) == 5
    assert not {a["item"] for a in answer} & {"sku-000", "sku-001", "sku-002"}
    assert client.predict(NAME, {"history": ["sku-000"]}, version="1") == client.predict(NAME, {"history": ["sku-000"]})
    assert len(client.predict(NAME, {"similar_to": "sku-003", "k": 3})) == 3
    # The worker ran the model code the archive carries, not a checkout of the repo.
    model_log = (torchserve.run_dir / "logs" / "model_log.log").read_text()
    assert "training code from" in model_log
    loaded_from = model_log.split("training code from")[-1].split()[0]
    assert str(torchserve.run_dir / "tmp" / "models") in loaded_from


def test_versions_are_listed_switched_and_removed(torchserve: TorchServeInstance, archives: dict[str, Archive]) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    client.register(archives["2"].path, model_name=NAME)
    versions = {v.version: v for v in client.describe(NAME)}
    assert set(versions) == {"1", "2"}
    assert versions["1"].is_default and not versions["2"].is_default
    assert all(v.is_ready for v in versions.values())
    assert len(client.predict(NAME, {"history": []})) == 10  # v1's default_k
    with pytest.raises(DefaultVersionProtected) as exc_info:
        client.unregister(NAME, "1")
    assert exc_info.value.status_code == 409
    with pytest.raises(ModelNotRegistered):
        client.set_default(NAME, "7")

    client.set_default(NAME, "2")
    assert client.default_version(NAME) == "2"
    assert len(client.predict(NAME, {"history": []})) == 20  # now v2 answers
    assert len(client.predict(NAME, {"history": []}, version="1")) == 10

    with pytest.raises(ModelVersionConflict):
        client.register(archives["2"].path, model_name=NAME)
    client.unregister(NAME, "1")
    assert [v.version for v in client.describe(NAME)] == ["2"]
    with pytest.raises(ModelNotRegistered):
        client.unregister(NAME, "1")
    with pytest.raises(ModelNotRegistered):
        client.describe(NAME, "1")


def test_workers_scale_up_and_down(torchserve: TorchServeInstance, archives: dict[str, Archive]) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    client.scale_workers(NAME, "1", min_workers=2, max_workers=2, timeout=60)
    info = _described_when(client, lambda info: info.ready_workers == 2)
    assert info.ready_workers == 2 and info.min_workers == 2
    client.scale_workers(NAME, "1", min_workers=1, timeout=60)
    info = _described_when(client, lambda info: len(info.workers) == 1)
    assert len(info.workers) == 1


def _described_when(client: TorchServeClient, done: Callable[[ModelVersionInfo], bool]) -> ModelVersionInfo:
    """TorchServe answers a synchronous scale once the new workers started; on a loaded machine a worker
    it replaces may still be listed as UNLOADING for a moment, so look again for a few seconds."""
    deadline = time.monotonic() + 20
    while True:
        [info] = client.describe(NAME, "1")
        if done(info) or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def test_bad_requests_come_back_as_prediction_rejected_with_the_handler_message(
    torchserve: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    with pytest.raises(PredictionRejected) as exc_info:
        client.predict(NAME, {"history": ["sku-001"], "k": 0})
    assert exc_info.value.status_code == 400
    assert '"k" must be a positive integer' in exc_info.value.message
    with pytest.raises(PredictionRejected, match="needs"):
        client.predict(NAME, {"nothing": 1})
    with pytest.raises(ModelNotRegistered):
        client.predict("no-such-model", {"history": []})


def test_a_broken_archive_gives_a_clear_error_and_leaves_nothing_registered(
    torchserve: TorchServeInstance, archives: dict[str, Archive], tmp_path: Path
) -> None:
    # A real archive whose checkpoint is damaged: the worker cannot load it.
    broken = torchserve.model_store / "recommender-9.mar"
    with zipfile.ZipFile(archives["1"].path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"garbage" if item.filename == "model.pt" else src.read(item.filename))
    try:
        started = time.monotonic()
        with pytest.raises(TorchServeError) as exc_info:
            torchserve.client.register(broken, model_name=NAME, initial_workers=1, timeout=90)
        assert time.monotonic() - started < 90
        assert "recommender-9.mar" in exc_info.value.message
        with pytest.raises(ModelNotRegistered):
            torchserve.client.describe(NAME)
        # No such file in the store: a 404 naming the archive.
        with pytest.raises(ModelNotRegistered, match=r"recommender-404\.mar"):
            torchserve.client.register("recommender-404.mar", model_name=NAME, timeout=30)
        # Not an archive at all.
        (torchserve.model_store / "junk-1.mar").write_bytes(b"not a zip")
        with pytest.raises(TorchServeError):
            torchserve.client.register("junk-1.mar", model_name="junk", timeout=30)
    finally:
        broken.unlink(missing_ok=True)
        (torchserve.model_store / "junk-1.mar").unlink(missing_ok=True)


def test_after_a_restart_torchserve_is_empty_and_versions_register_again_from_the_store(
    torchserve: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    torchserve.restart()
    assert client.list_models() == []
    client.register(archives["1"].path, model_name=NAME)
    assert len(client.predict(NAME, {"history": ["sku-001"], "k": 3})) == 3


def test_the_fast_path_keeps_its_budget_when_torchserve_is_stopped_mid_run(
    torchserve: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    assert len(client.predict_fast(NAME, {"history": ["sku-001"], "k": 3}, budget=2.0)) == 3
    torchserve.stop()
    started = time.monotonic()
    with pytest.raises(TorchServeUnavailable) as exc_info:
        client.predict_fast(NAME, {"history": ["sku-001"], "k": 3}, budget=0.3)
    assert time.monotonic() - started < 1.0
    assert exc_info.value.status_code == 503


def test_settings_point_the_default_client_at_the_test_torchserve(
    torchserve_settings: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    config = TorchServeConfig.from_settings()
    expected = torchserve_settings.config
    assert (config.management_url, config.inference_url, config.key_file, config.token_auth) == (
        expected.management_url,
        expected.inference_url,
        expected.key_file,
        False,
    )
    assert config.model_store == expected.model_store
    client = get_client()
    client.register(Path(config.model_store) / archives["1"].file_name, model_name=config.model_name)
    assert client.default_version(config.model_name) == "1"


def test_a_tiny_budget_times_out_instead_of_waiting(
    torchserve: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    with pytest.raises(TorchServeTimeout):
        # maxBatchDelay alone is 2 ms; a 0.1 ms budget cannot be met.
        client.predict_fast(NAME, {"history": ["sku-001"], "k": 3}, budget=0.0001)


def test_an_archive_outside_the_store_is_registered_by_its_absolute_path(
    torchserve: TorchServeInstance, archives: dict[str, Archive], tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "recommender-1.mar"
    outside.parent.mkdir()
    shutil.copy(archives["1"].path, outside)
    reg = torchserve.client.register(outside, model_name=NAME)
    assert reg.version == "1"
    [info] = torchserve.client.describe(NAME)
    assert info.mar_url == str(outside)


def test_a_version_without_workers_is_unavailable_after_retries_not_a_hang(
    torchserve: TorchServeInstance, archives: dict[str, Archive]
) -> None:
    client = torchserve.client
    client.register(archives["1"].path, model_name=NAME)
    client.scale_workers(NAME, "1", min_workers=0, timeout=30)
    [info] = client.describe(NAME)
    assert not info.is_ready
    started = time.monotonic()
    with pytest.raises(TorchServeUnavailable) as exc_info:
        client.predict(NAME, {"history": []}, timeout=2)
    assert time.monotonic() - started < 5
    assert exc_info.value.extra["torchserve_status"] == 503
    with pytest.raises(WorkersNotReady, match="no READY worker"):
        client.wait_until_ready(NAME, "1", timeout=0.5)
    client.scale_workers(NAME, "1", min_workers=1, timeout=60)
    assert client.wait_until_ready(NAME, "1", timeout=30).is_ready
    assert len(client.predict(NAME, {"history": [], "k": 2})) == 2
