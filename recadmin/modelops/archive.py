"""Build a TorchServe model archive (.mar) from a training checkpoint.

The archive is self-contained: our handler and its helper module (HANDLER_HELPERS), the `training`
package (model code, checkpoint loader, index maps), the checkpoint files and a model-config.yaml.
A TorchServe that has torch and nothing of ours installed can serve it. Archives are named
`<name>-<version>.mar` in the model store; the version is also written into the archive's manifest,
which is what TorchServe registers.

Needs no Django: bench scripts call `archive_build` directly.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recadmin.core.errors import ApplicationError, Conflict, ValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
HANDLER_FILE = REPO_ROOT / "handlers" / "recommender_handler.py"
MODEL_CONFIG_TEMPLATE = REPO_ROOT / "handlers" / "model-config.yaml"
TRAINING_PACKAGE = REPO_ROOT / "training"
#: What training.checkpoint.save_checkpoint writes and the handler needs.
CHECKPOINT_FILES = ("config.json", "model.pt", "items.json")
# The ranking stage's archive: its own handler and settings template, and the files of
# training.ranker.checkpoint.RANKER_CHECKPOINT_FILES (repeated here: importing it would load torch).
RANKER_HANDLER_FILE = REPO_ROOT / "handlers" / "ranker_handler.py"
RANKER_MODEL_CONFIG_TEMPLATE = REPO_ROOT / "handlers" / "ranker-model-config.yaml"
RANKER_CHECKPOINT_FILES = ("config.json", "model.pt", "features.json", "items.json")
#: What both handlers import from beside them (at the archive root): packed into every archive.
HANDLER_HELPERS = (REPO_ROOT / "handlers" / "request_body.py",)
#: stage -> (handler, model-config template, checkpoint files)
STAGES: dict[str, tuple[Path, Path, tuple[str, ...]]] = {
    "retrieval": (HANDLER_FILE, MODEL_CONFIG_TEMPLATE, CHECKPOINT_FILES),
    "ranker": (RANKER_HANDLER_FILE, RANKER_MODEL_CONFIG_TEMPLATE, RANKER_CHECKPOINT_FILES),
}

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*$")
# No hyphen in versions, so that <name>-<version>.mar splits unambiguously from the right.
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._]*$")


class ArchiveError(ApplicationError):
    status_code = 500
    default_message = "Building the model archive failed."


@dataclass(frozen=True)
class Archive:
    name: str
    version: str
    path: Path
    sha256: str
    size: int

    @property
    def file_name(self) -> str:
        return self.path.name


def archive_path(*, model_store: Path, name: str, version: str) -> Path:
    return Path(model_store) / f"{name}-{version}.mar"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archive_build(
    *,
    checkpoint_dir: Path,
    name: str,
    version: str,
    model_store: Path,
    batch_size: int | None = None,
    max_batch_delay: int | None = None,
    workers: int | None = None,
    response_timeout: int | None = None,
    handler_settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    timeout: float = 600.0,
    stage: str = "retrieval",
) -> Archive:
    """Package `checkpoint_dir` (as written by training.checkpoint.save_checkpoint) into
    model_store/<name>-<version>.mar and return its path and sha256.

    batch_size, max_batch_delay (ms), workers, response_timeout (s) and handler_settings
    (default_k, max_k, torch_threads) override handlers/model-config.yaml for this archive.
    stage="ranker" packages a ranker checkpoint (training.ranker.checkpoint) with
    handlers/ranker_handler.py and handlers/ranker-model-config.yaml (handler settings:
    max_candidates, torch_threads) instead.
    An existing archive of the same name and version is a Conflict unless overwrite=True."""
    if stage not in STAGES:
        raise ValidationError(f"Unknown stage '{stage}'; expected one of {', '.join(STAGES)}.", field="stage")
    handler_file, config_template, checkpoint_files = STAGES[stage]
    if not _NAME_RE.match(name or ""):
        raise ValidationError(
            "Model name: letters, digits, _ and single hyphens, starting with a letter.", field="name"
        )
    if not _VERSION_RE.match(version or ""):
        raise ValidationError("Version: letters, digits, dots and _, e.g. 3 or 1.2.", field="version")
    checkpoint_dir = Path(checkpoint_dir)
    missing = [f for f in checkpoint_files if not (checkpoint_dir / f).is_file()]
    if missing:
        raise ValidationError(f"Checkpoint {checkpoint_dir} lacks {', '.join(missing)}.", field="checkpoint_dir")
    store = Path(model_store)
    store.mkdir(parents=True, exist_ok=True)
    target = archive_path(model_store=store, name=name, version=version)
    if target.exists() and not overwrite:
        raise Conflict(f"{target.name} already exists in the model store.", {"path": str(target)})

    model_config = yaml.safe_load(config_template.read_text()) or {}
    for key, value in (
        ("batchSize", batch_size),
        ("maxBatchDelay", max_batch_delay),
        ("minWorkers", workers),
        ("maxWorkers", workers),
        ("responseTimeout", response_timeout),
    ):
        if value is not None:
            if int(value) < (0 if key == "maxBatchDelay" else 1):
                raise ValidationError(f"{key} must be a positive integer.", field=key)
            model_config[key] = int(value)
    model_config["handler"] = {**(model_config.get("handler") or {}), **(handler_settings or {})}

    # The archiver stages files in $TMPDIR/<model name>: a private TMPDIR keeps two builds of
    # the same model name (tests, a training run and the admin) from mixing their files.
    with tempfile.TemporaryDirectory(prefix="mar-", dir=store) as staging_str:
        staging = Path(staging_str)
        code = staging / "code"
        shutil.copytree(TRAINING_PACKAGE, code / "training", ignore=_only_python_sources)
        config_file = staging / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(model_config, sort_keys=False))
        export = staging / "export"
        export.mkdir()
        tmp = staging / "tmp"
        tmp.mkdir()
        # A directory given to --extra-files has its *contents* copied into the archive root:
        # code/ becomes training/ at the root (on the worker's sys.path), the checkpoint's
        # files and the handlers' helpers (a file is copied as itself) land beside the handler.
        cmd = [
            _archiver_bin(),
            "--model-name",
            name,
            "--version",
            version,
            "--handler",
            str(handler_file),
            "--extra-files",
            ",".join([str(code), str(checkpoint_dir.resolve()), *(str(f) for f in HANDLER_HELPERS)]),
            "--config-file",
            str(config_file),
            "--export-path",
            str(export),
            "--archive-format",
            "default",
            "--force",
        ]
        env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp)}
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ArchiveError(f"torch-model-archiver took longer than {timeout:.0f}s.") from exc
        built = export / f"{name}.mar"
        if proc.returncode != 0 or not built.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise ArchiveError(f"torch-model-archiver failed (exit {proc.returncode}): {' | '.join(tail)}")
        _check_archive(built, handler_file.name, checkpoint_files)
        # Same file system: the archive appears complete or not at all.
        os.replace(built, target)
    return Archive(name=name, version=version, path=target, sha256=file_sha256(target), size=target.stat().st_size)


def archive_manifest(path: Path) -> dict[str, Any]:
    """The MANIFEST.json torch-model-archiver wrote into an archive."""
    import json

    try:
        with zipfile.ZipFile(path) as zf:
            return dict(json.loads(zf.read("MAR-INF/MANIFEST.json")))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValidationError(f"{Path(path).name} is not a model archive: {exc}", field="archive") from exc


def _only_python_sources(directory: str, names: list[str]) -> set[str]:
    """copytree filter: the model code only (no caches, tests, notebooks or data files)."""
    skip = set()
    for name in names:
        if os.path.isdir(os.path.join(directory, name)):
            if name in ("__pycache__", "tests") or name.startswith("."):
                skip.add(name)
        elif not name.endswith(".py"):
            skip.add(name)
    return skip


def _check_archive(path: Path, handler: str, checkpoint_files: tuple[str, ...]) -> None:
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    needed = {"MAR-INF/MANIFEST.json", handler, "training/__init__.py", *checkpoint_files}
    needed.update(f.name for f in HANDLER_HELPERS)
    missing = sorted(needed - names)
    if missing:
        raise ArchiveError(f"The archive lacks {', '.join(missing)}.")


def _archiver_bin() -> str:
    local = Path(sys.executable).parent / "torch-model-archiver"
    if local.exists():
        return str(local)
    found = shutil.which("torch-model-archiver")
    if not found:
        raise ArchiveError("torch-model-archiver is not installed in this environment.")
    return found
