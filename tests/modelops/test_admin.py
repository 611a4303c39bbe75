"""The admin: Train now, live progress, versions with TorchServe's state, actions through the adapter."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from recadmin.modelops.models import ModelVersion, TrainingRun
from tests.fixtures.torchserve import TorchServeInstance

pytestmark = pytest.mark.django_db

VERSIONS_URL = "/admin/modelops/modelversion/"
ROLLBACK_URL = "/admin/modelops/modelversion/rollback/"


def _action(client: Client, action: str, versions: list[ModelVersion], **extra: Any) -> str:
    response = client.post(
        VERSIONS_URL,
        {"action": action, "_selected_action": [v.pk for v in versions], **extra},
        follow=True,
    )
    assert response.status_code == 200
    return " ".join(str(m) for m in response.context["messages"])


def test_promote_and_roll_back_through_the_admin_actions(
    admin_client: Client, make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    v1 = make_version(1, status="default")
    v2 = make_version(2)

    message = _action(admin_client, "promote", [v2], confirm="yes")
    assert "recommender v2 is now the default in TorchServe" in message
    assert torchserve_settings.client.default_version("recommender") == "2"
    # The change history says who made it the default.
    promoted = v2.history.order_by("-history_id").first()
    assert promoted.status == "default" and promoted.history_user is not None

    response = admin_client.post(ROLLBACK_URL, {"name": "recommender", "confirm": "yes"}, follow=True)
    message = " ".join(str(m) for m in response.context["messages"])
    assert "recommender v1 is the default again" in message
    assert torchserve_settings.client.default_version("recommender") == "1"
    v1.refresh_from_db()
    assert v1.status == "default"


def test_admin_actions_show_errors_instead_of_failing(admin_client: Client, settings: Any) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    v1 = ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    assert "is the default: promote or roll back" in _action(admin_client, "retire", [v1], confirm="yes")
    response = admin_client.post(ROLLBACK_URL, {"name": "recommender", "confirm": "yes"}, follow=True)
    assert "no previous default" in " ".join(str(m) for m in response.context["messages"])
    assert "Workers: give a number" in _action(admin_client, "scale", [v1], workers="")
    # TorchServe down: the action says so instead of failing the page.
    assert "did not answer" in _action(admin_client, "scale", [v1], workers="2")


def test_scale_and_retire_through_the_admin(
    admin_client: Client, make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="default")
    v2 = make_version(2)
    assert "2 worker(s) requested and ready" in _action(admin_client, "scale", [v2], workers="2")
    assert torchserve_settings.client.describe("recommender", "2")[0].ready_workers == 2
    assert "unregistered from TorchServe" in _action(admin_client, "retire", [v2], confirm="yes")
    assert [i.version for i in torchserve_settings.client.describe("recommender")] == ["1"]


def test_the_version_list_shows_what_torchserve_actually_has_and_metrics_against_the_default(
    admin_client: Client, make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="default", ndcg=0.05)
    v2 = make_version(2, ndcg=0.04)
    torchserve_settings.client.unregister("recommender", "2")

    page = admin_client.get(VERSIONS_URL).content.decode()

    assert "loaded · 1/1 workers ready · default" in page
    assert "not loaded (run the sync)" in page
    assert "-0.0100" in page  # v2's NDCG@10 against the default's
    detail = admin_client.get(f"{VERSIONS_URL}{v2.pk}/change/").content.decode()
    assert "default v1" in detail and "0.0500" in detail and "0.0400" in detail


def test_the_version_list_says_when_torchserve_is_unreachable(admin_client: Client, settings: Any) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    page = admin_client.get(VERSIONS_URL).content.decode()
    assert "unreachable" in page and "manage.py torchserve start" in page


def test_train_now_starts_a_run_with_the_chosen_parameters(
    admin_client: Client,
    make_shop: Callable[..., None],
    torchserve_settings: TorchServeInstance,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_shop()
    form = admin_client.get("/admin/modelops/trainingrun/add/").content.decode()
    assert "Train now" in form and 'name="max_epochs"' in form

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/modelops/trainingrun/add/", {"kind": "pop", "model_name": "", "seed": "3"}, follow=True
        )

    assert response.status_code == 200
    run = TrainingRun.objects.get()
    assert run.params == {"seed": 3} and run.trigger == "admin" and run.created_by is not None
    assert run.status == "succeeded", run.error
    assert ModelVersion.objects.get(training_run=run).status == "default"


def test_train_now_refuses_a_parameter_the_kind_does_not_have(admin_client: Client) -> None:
    response = admin_client.post("/admin/modelops/trainingrun/add/", {"kind": "pop", "max_epochs": "3"})
    assert response.status_code == 200
    assert "Unknown parameter" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_training_runs_show_a_live_progress_bar_fed_by_a_json_endpoint(admin_client: Client) -> None:
    run = TrainingRun.objects.create(kind="sasrec", status="running", progress=37.0, stage="training epoch 3/8")

    page = admin_client.get("/admin/modelops/trainingrun/").content.decode()
    assert f'data-run="{run.pk}" data-status="running"' in page
    assert "37% · training epoch 3/8" in page
    assert "Train now" in page

    progress = admin_client.get(f"/admin/modelops/trainingrun/progress/?ids={run.pk},x").json()
    assert progress["runs"] == [
        {"id": run.pk, "status": "running", "progress": 37.0, "stage": "training epoch 3/8", "error": ""}
    ]
    detail = admin_client.get(f"/admin/modelops/trainingrun/{run.pk}/change/").content.decode()
    assert "recadmin-progress" in detail and "progress/" in detail


def test_cancel_action_stops_a_queued_run(admin_client: Client) -> None:
    run = TrainingRun.objects.create(kind="pop")
    admin_client.post("/admin/modelops/trainingrun/", {"action": "cancel_runs", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == "cancelled"


def _torchserve_down(settings: Any) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5


def test_saving_a_version_keeps_its_metrics_and_changes_only_note_and_workers(
    admin_client: Client, settings: Any
) -> None:
    _torchserve_down(settings)
    version = ModelVersion.objects.create(
        name="recommender", version=1, kind="pop", status="built", valid_metrics={"NDCG@10": 0.0876}
    )
    url = f"{VERSIONS_URL}{version.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="valid_metrics"' not in page and 'name="test_metrics"' not in page
    assert 'name="note"' in page and 'name="workers"' in page
    assert "0.0876" in page  # the metrics are shown, read-only

    response = admin_client.post(
        url, {"note": "kept for the spring sale", "workers": "3", "valid_metrics": '{"NDCG@10": 1.0}'}
    )

    assert response.status_code == 302, response.content.decode()[:500]
    version.refresh_from_db()
    assert (version.note, version.workers) == ("kept for the spring sale", 3)
    assert version.valid_metrics == {"NDCG@10": 0.0876}


def test_saving_a_loaded_version_asks_torchserve_for_the_workers(
    admin_client: Client, make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="default")
    v2 = make_version(2)
    response = admin_client.post(f"{VERSIONS_URL}{v2.pk}/change/", {"note": "", "workers": "2"}, follow=True)
    assert response.status_code == 200
    assert torchserve_settings.client.describe("recommender", "2")[0].ready_workers == 2
    v2.refresh_from_db()
    assert v2.workers == 2


def test_saving_a_version_refuses_workers_out_of_range(admin_client: Client, settings: Any) -> None:
    _torchserve_down(settings)
    version = ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="built")
    response = admin_client.post(f"{VERSIONS_URL}{version.pk}/change/", {"note": "", "workers": "99"})
    assert response.status_code == 200
    assert "less than or equal to 16" in response.content.decode()


def test_a_version_page_shows_who_changed_it_and_offers_no_restore(admin_client: Client, settings: Any) -> None:
    _torchserve_down(settings)
    version = ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="built")
    url = f"{VERSIONS_URL}{version.pk}/change/"
    admin_client.post(url, {"note": "checked by Anna", "workers": "1"})

    page = admin_client.get(url).content.decode()
    assert "Recent changes" in page and "note: - → checked by Anna" in page and "admin" in page
    first = version.history.order_by("history_id").first()
    past = admin_client.get(f"{VERSIONS_URL}{version.pk}/history/{first.history_id}/").content.decode()
    assert "Revert" not in past


def test_promote_asks_for_confirmation_and_says_what_will_change(admin_client: Client, settings: Any) -> None:
    _torchserve_down(settings)
    ModelVersion.objects.create(
        name="recommender", version=1, kind="pop", status="default", valid_metrics={"NDCG@10": 0.05}
    )
    v2 = ModelVersion.objects.create(
        name="recommender", version=2, kind="pop", status="registered", valid_metrics={"NDCG@10": 0.06}
    )

    response = admin_client.post(VERSIONS_URL, {"action": "promote", "_selected_action": [v2.pk]})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Promote recommender v2?" in page and "What will change" in page
    assert "recommender v2 becomes the default" in page and "recommender v1, the default now, stays registered" in page
    assert "0.0600" in page and "0.0500" in page
    assert 'name="confirm" value="yes"' in page and f'name="_selected_action" value="{v2.pk}"' in page
    v2.refresh_from_db()
    assert v2.status == "registered"  # nothing happens before the confirmation


def test_retire_confirmation_says_which_versions_cannot_be_retired(admin_client: Client, settings: Any) -> None:
    _torchserve_down(settings)
    v1 = ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    v2 = ModelVersion.objects.create(name="recommender", version=2, kind="pop", status="registered")
    page = admin_client.post(VERSIONS_URL, {"action": "retire", "_selected_action": [v1.pk, v2.pk]}).content.decode()
    assert "Retire 2 versions?" in page
    assert "recommender v2 is unregistered from TorchServe" in page
    assert "recommender v1 is the default: promote or roll back to another version first" in page
    assert ModelVersion.objects.filter(status="retired").count() == 0


def test_roll_back_is_a_button_with_a_confirmation_page_and_needs_no_selection(
    admin_client: Client, settings: Any
) -> None:
    _torchserve_down(settings)
    from django.utils import timezone

    ModelVersion.objects.create(
        name="recommender", version=1, kind="pop", status="registered", promoted_at=timezone.now()
    )
    ModelVersion.objects.create(name="recommender", version=3, kind="pop", status="default", promoted_at=timezone.now())

    listing = admin_client.get(VERSIONS_URL).content.decode()
    assert f'href="{ROLLBACK_URL}"' in listing
    assert 'value="rollback"' not in listing  # no longer an action on selected rows

    page = admin_client.get(ROLLBACK_URL).content.decode()
    assert "Roll back &#x27;recommender&#x27;?" in page or "Roll back 'recommender'?" in page
    assert "recommender v1 becomes the default of &#x27;recommender&#x27; again" in page
    assert "recommender v3, the default now" in page
    assert 'name="confirm" value="yes"' in page


def test_roll_back_page_says_when_there_is_nothing_to_roll_back_to(admin_client: Client, settings: Any) -> None:
    _torchserve_down(settings)
    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    page = admin_client.get(ROLLBACK_URL).content.decode()
    assert "no previous default" in page and 'name="confirm"' not in page


@pytest.mark.parametrize(
    ("kind", "preset", "advanced", "expected"),
    [
        ("sasrec", "quick", {}, {"max_epochs": 30, "max_seconds": 120.0, "patience": 3}),
        ("sasrec", "quick", {"max_epochs": "5"}, {"max_epochs": 5, "max_seconds": 120.0, "patience": 3}),
        ("sasrec", "standard", {}, {}),
        ("itemknn", "thorough", {}, {"neighbours": 300}),
        ("pop", "thorough", {"half_life_days": "3"}, {"half_life_days": 3.0}),
    ],
)
def test_train_now_takes_a_preset_and_advanced_overrides(
    admin_client: Client, kind: str, preset: str, advanced: dict[str, str], expected: dict[str, Any]
) -> None:
    response = admin_client.post(
        "/admin/modelops/trainingrun/add/", {"kind": kind, "model_name": "", "preset": preset, **advanced}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert TrainingRun.objects.get().params == expected


def test_train_now_shows_the_presets_and_keeps_hyperparameters_under_advanced(admin_client: Client) -> None:
    page = admin_client.get("/admin/modelops/trainingrun/add/").content.decode()
    for preset in ("quick", "standard", "thorough"):
        assert f'value="{preset}"' in page
    assert re.search(r'value="standard"[^>]*checked|checked[^>]*value="standard"', page)
    advanced = page[page.index("Advanced: hyperparameters") - 400 :]
    assert "collapse" in advanced and 'name="max_epochs"' in advanced


def test_train_now_validates_advanced_parameters_with_the_pipeline_rules(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/modelops/trainingrun/add/", {"kind": "pop", "preset": "quick", "max_epochs": "3"}
    )
    assert response.status_code == 200
    assert "Unknown parameter" in response.content.decode()
    assert not TrainingRun.objects.exists()
