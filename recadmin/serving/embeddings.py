"""Item embeddings for the MMR re-rank, cached per model version and item.

TorchServe answers with items and scores only, and the web process never imports torch. So a task
(`export_item_embeddings`, on a worker) opens the default version's archive once, asks the model for
its item embeddings (the same ones the handler uses for "similar items"), and stores each item's
unit vector as float16 bytes in the cache. The hot path reads the candidates' vectors with one
`get_many` when the scene has MMR on. Until a version's vectors are ready, the request that notices
enqueues the export (once) and MMR falls back to score order for that moment.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.core.cache import cache

logger = logging.getLogger(__name__)

TTL_SECONDS = 7 * 24 * 3600
_KEY = "serving:emb:{}:{}"
_READY = "serving:emb:{}:ready"
_LOCK = "serving:emb:{}:lock"
_CHUNK = 2000
# A version's vectors never change: each process keeps those it has read (one version at a time),
# as float64 arrays, so the engine stacks them without converting Python floats on every request.
_local: dict[int, dict[str, np.ndarray]] = {}
_local_lock = threading.Lock()


def embedding_key(version_id: int, shop_id: str) -> str:
    return _KEY.format(version_id, shop_id)


def embeddings_get(*, version_id: int, shop_ids: Iterable[str]) -> dict[str, np.ndarray]:
    """Unit vectors (read-only float64 arrays) of the items the export covered (one round trip);
    {} while not exported."""
    ids = list(shop_ids)
    local = _local.get(version_id)
    if local is not None:
        out = {s: local[s] for s in ids if s in local}
        remote = [s for s in ids if s not in local]
        if not remote:
            return out
    else:
        out, remote = {}, ids
    ready_key = _READY.format(version_id)
    try:
        found = cache.get_many([ready_key, *(embedding_key(version_id, s) for s in remote)])
    except Exception:  # noqa: BLE001 - no vectors: MMR degrades to score order
        return out
    if ready_key not in found:
        _request_export(version_id)
        return out
    fetched: dict[str, np.ndarray] = {}
    for shop_id in remote:
        raw = found.get(embedding_key(version_id, shop_id))
        if raw is not None:
            vector = np.frombuffer(raw, dtype=np.float16).astype(np.float64)
            vector.setflags(write=False)  # shared by every request of this process
            fetched[shop_id] = vector
    with _local_lock:
        if version_id not in _local:
            _local.clear()
            _local[version_id] = {}
        _local[version_id].update(fetched)
    out.update(fetched)
    return out


def _request_export(version_id: int) -> None:
    try:
        if not cache.add(_LOCK.format(version_id), 1, 600):
            return
        from recadmin.serving.tasks import export_item_embeddings

        export_item_embeddings.delay(version_id)
    except Exception:  # the next request asks again once the lock expires
        logger.warning("could not enqueue the item-embedding export of version %s", version_id, exc_info=True)


def embeddings_export(*, version_id: int) -> int:
    """Load the version's checkpoint from its archive and cache every item's unit vector.
    Runs in a worker (imports torch). Returns the number of items exported."""
    import torch

    from recadmin.modelops.models import ModelVersion
    from training.checkpoint import load_checkpoint

    version = ModelVersion.objects.get(pk=version_id)
    archive = Path(version.archive_path)
    with tempfile.TemporaryDirectory(prefix="recadmin-emb-") as tmp:
        with zipfile.ZipFile(archive) as mar:
            for name in ("config.json", "model.pt", "items.json"):
                mar.extract(name, tmp)
        loaded = load_checkpoint(tmp)
        with torch.inference_mode():
            vectors = torch.nn.functional.normalize(loaded.model.item_embeddings().detach().float(), dim=1)
    matrix = vectors.numpy().astype(np.float16)
    index = loaded.item_index
    payload: dict[str, bytes] = {}
    count = 0
    for position in range(1, matrix.shape[0]):
        try:
            shop_id = index.id_of(position)
        except IndexError:
            continue
        payload[embedding_key(version_id, shop_id)] = matrix[position].tobytes()
        count += 1
        if len(payload) >= _CHUNK:
            cache.set_many(payload, TTL_SECONDS)
            payload = {}
    if payload:
        cache.set_many(payload, TTL_SECONDS)
    cache.set(_READY.format(version_id), count, TTL_SECONDS)
    with contextlib.suppress(Exception):
        cache.delete(_LOCK.format(version_id))
    logger.info("exported %d item embeddings (dim %d) of model version %s", count, matrix.shape[1], version)
    return count
