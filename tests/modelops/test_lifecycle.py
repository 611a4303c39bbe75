"""Promote, roll back, retire, scale and the start-up sync, against a real TorchServe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from recadmin.core.errors import Conflict, ValidationError
from recadmin.modelops.models import ModelVersion, ModelVersionStatus
from recadmin.modelops.selectors import default_model_get, model_versions_with_runtime
from recadmin.modelops.services import (
    model_version_promote,
    model_version_retire,
    model_version_rollback,
    model_version_scale,
    models_sync_torchserve,
)
from tests.fixtures.torchserve import TorchServeInstance

pytestmark = pytest.mark.django_db


def _ts_default(torchserve: TorchServeInstance, name: str = "recommender") -> str | None:
    return torchserve.client.default_version(name)


def test_promote_makes_the_version_default_in_torchserve_and_the_registry(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    v1 = make_version(1, status="default")
    v2 = make_version(2)
    assert default_model_get().version == 1  # cached now

    model_version_promote(version=v2)

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == ("registered", "default")
    assert _ts_default(torchserve_settings) == "2"
    assert default_model_get().version == 2, "the serving cache must be dropped on promotion"


def test_rollback_restores_the_previous_default_and_skips_it_next_time(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="registered", promoted_minutes_ago=60)
    make_version(2, status="registered", promoted_minutes_ago=30)
    v3 = make_version(3, status="default")

    restored = model_version_rollback(name="recommender")

    assert restored.version == 2
    assert _ts_default(torchserve_settings) == "2"
    v3.refresh_from_db()
    assert v3.status == "registered" and v3.rolled_back_at is not None
    # A second rollback goes further back, not forth to the version just abandoned.
    assert model_version_rollback(name="recommender").version == 1
    assert _ts_default(torchserve_settings) == "1"


def test_rollback_without_a_previous_default_is_a_conflict(make_version: Callable[..., ModelVersion]) -> None:
    make_version(1, status="default")
    with pytest.raises(Conflict, match="no previous default"):
        model_version_rollback(name="recommender")


def test_retire_unregisters_but_refuses_the_default(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    v1 = make_version(1, status="default")
    v2 = make_version(2)
    with pytest.raises(Conflict, match="is the default"):
        model_version_retire(version=v1)

    model_version_retire(version=v2)

    v2.refresh_from_db()
    assert v2.status == "retired"
    assert [info.version for info in torchserve_settings.client.describe("recommender")] == ["1"]


def test_the_registry_view_shows_what_torchserve_actually_has(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="default")
    ghost = make_version(2)
    torchserve_settings.client.unregister("recommender", "2")  # TorchServe lost it behind our back

    view = model_versions_with_runtime()

    by_version = {entry.model_version.version: entry for entry in view.versions}
    assert view.torchserve_reachable
    assert by_version[1].loaded and by_version[1].is_torchserve_default and by_version[1].workers_ready == 1
    assert not by_version[ghost.version].loaded


def test_sync_after_a_torchserve_restart_registers_the_live_versions_again(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1)
    make_version(2, status="default")
    make_version(3, status="retired")
    torchserve_settings.restart()
    assert torchserve_settings.client.list_models() == []

    report = models_sync_torchserve()

    assert report.ok, report.summary()
    assert report.registered == ["recommender v2", "recommender v1"]  # the default first: lists come back sooner
    versions = {info.version: info for info in torchserve_settings.client.describe("recommender")}
    assert set(versions) == {"1", "2"}
    assert versions["2"].is_default
    assert models_sync_torchserve().already_loaded == ["recommender v2", "recommender v1"]


def test_sync_refuses_a_changed_archive_and_reports_a_missing_one(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    v1 = make_version(1, status="default")
    v2 = make_version(2, status="registered")
    torchserve_settings.restart()
    with open(v1.archive_path, "ab") as handle:
        handle.write(b"tampered")
    Path(v2.archive_path).unlink()

    report = models_sync_torchserve()

    assert "does not match its recorded sha256" in report.failed["recommender v1"]
    assert "missing" in report.failed["recommender v2"]
    assert torchserve_settings.client.list_models() == []
    v1.refresh_from_db()
    assert "sync failed" in v1.note


def test_promoting_a_retired_version_is_a_conflict_and_scaling_needs_a_sane_number(db: None) -> None:
    v1 = ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    v2 = ModelVersion.objects.create(name="recommender", version=2, kind="pop", status=ModelVersionStatus.RETIRED)
    with pytest.raises(Conflict, match="only a registered version"):
        model_version_promote(version=v2)
    with pytest.raises(Conflict, match="not loaded in TorchServe"):
        model_version_scale(version=v2, workers=1)
    for bad in (0, 17, True):
        with pytest.raises(ValidationError):
            model_version_scale(version=v1, workers=bad)
