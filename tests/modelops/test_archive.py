"""Building .mar archives with torch-model-archiver from a real checkpoint."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
import yaml

from recadmin.core.errors import Conflict, ValidationError
from recadmin.modelops.archive import archive_build, archive_manifest, archive_path


def test_it_builds_a_self_contained_archive_named_by_name_and_version(trained_checkpoint: Path, tmp_path: Path) -> None:
    built = archive_build(
        checkpoint_dir=trained_checkpoint,
        name="recommender",
        version="3",
        model_store=tmp_path,
        batch_size=16,
        max_batch_delay=7,
        handler_settings={"default_k": 50},
    )
    assert built.path == tmp_path / "recommender-3.mar"
    assert built.path == archive_path(model_store=tmp_path, name="recommender", version="3")
    assert built.sha256 == hashlib.sha256(built.path.read_bytes()).hexdigest()
    assert built.size == built.path.stat().st_size
    manifest = archive_manifest(built.path)
    assert manifest["model"]["modelName"] == "recommender"
    assert manifest["model"]["modelVersion"] == "3"
    assert manifest["model"]["handler"] == "recommender_handler.py"
    with zipfile.ZipFile(built.path) as zf:
        names = set(zf.namelist())
        config = yaml.safe_load(zf.read("model-config.yaml"))
    # The model code travels with the archive as a `training` package at the root.
    assert {"training/__init__.py", "training/checkpoint.py", "training/models/pop.py", "training/data.py"} <= names
    assert {"config.json", "model.pt", "items.json", "recommender_handler.py"} <= names
    # The handler's helper module beside it, where its top-level import finds it in the worker.
    assert "request_body.py" in names
    assert not any("__pycache__" in n for n in names)
    assert config["batchSize"] == 16 and config["maxBatchDelay"] == 7
    assert config["handler"]["default_k"] == 50 and config["handler"]["max_k"] == 1000
    # Nothing of the build is left in the store but the archive.
    assert [p.name for p in tmp_path.iterdir()] == ["recommender-3.mar"]


def test_an_existing_version_is_a_conflict_unless_overwritten(trained_checkpoint: Path, tmp_path: Path) -> None:
    first = archive_build(checkpoint_dir=trained_checkpoint, name="recommender", version="1", model_store=tmp_path)
    with pytest.raises(Conflict, match="already exists"):
        archive_build(checkpoint_dir=trained_checkpoint, name="recommender", version="1", model_store=tmp_path)
    again = archive_build(
        checkpoint_dir=trained_checkpoint,
        name="recommender",
        version="1",
        model_store=tmp_path,
        batch_size=2,
        overwrite=True,
    )
    assert again.path == first.path
    assert again.sha256 != first.sha256


def test_a_checkpoint_without_its_files_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    with pytest.raises(ValidationError) as exc_info:
        archive_build(checkpoint_dir=tmp_path / "ckpt", name="recommender", version="1", model_store=tmp_path / "s")
    assert "model.pt" in exc_info.value.message
    assert "checkpoint_dir" in exc_info.value.extra["fields"]


@pytest.mark.parametrize(
    ("name", "version", "field"),
    [("recommender", "1-2", "version"), ("recommender", "", "version"), ("9lives", "1", "name"), ("a/b", "1", "name")],
)
def test_bad_names_and_versions_are_rejected(
    trained_checkpoint: Path, tmp_path: Path, name: str, version: str, field: str
) -> None:
    with pytest.raises(ValidationError) as exc_info:
        archive_build(checkpoint_dir=trained_checkpoint, name=name, version=version, model_store=tmp_path)
    assert field in exc_info.value.extra["fields"]


def test_a_file_that_is_not_an_archive_has_no_manifest(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus-1.mar"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ValidationError, match="not a model archive"):
        archive_manifest(bogus)
