"""recadmin/gunicorn_conf.py: what each gunicorn worker does before its first request."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    # Imported on its own, the module points PROMETHEUS_MULTIPROC_DIR at a directory of its own:
    # this test process's /metrics must not follow it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gc.unfreeze()
    yield importlib.import_module("recadmin.gunicorn_conf")
    gc.unfreeze()  # the test process's collector walks everything again


def test_heap_freeze_puts_the_objects_alive_now_out_of_the_collectors_reach(gunicorn_conf: ModuleType) -> None:
    kept = [[i] for i in range(10_000)]

    frozen = gunicorn_conf.heap_freeze()

    assert frozen == gc.get_freeze_count() >= len(kept)
    # A full collection no longer walks them: it sees only what was made since.
    made_since = [[i] for i in range(100)]
    walked = gc.get_objects()
    assert len(walked) < frozen
    assert any(o is made_since[0] for o in walked) and not any(o is kept[0] for o in walked)


def test_heap_freeze_can_be_turned_off(gunicorn_conf: ModuleType, settings: Any) -> None:
    settings.SERVING_GC_FREEZE = False

    assert gunicorn_conf.heap_freeze() == 0
    assert gc.get_freeze_count() == 0


def test_a_worker_freezes_its_heap_after_the_warm_up(
    gunicorn_conf: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[tuple[str, int]] = []
    monkeypatch.setattr("recadmin.core.scheduler.scheduler_start_if_enabled", lambda: None)
    monkeypatch.setattr(
        "recadmin.serving.warmup.serving_warm_up", lambda: steps.append(("warm-up", gc.get_freeze_count()))
    )

    gunicorn_conf.post_worker_init(worker=object())

    # What the warm-up loaded is frozen with the rest: it ran before the freeze.
    assert steps == [("warm-up", 0)]
    assert gc.get_freeze_count() > 0
