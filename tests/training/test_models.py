from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.conftest import BLOCK_SIZE, planted_dataset
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import split_leave_one_out
from training.metrics import evaluate
from training.models import build_model

QUICK = {
    "pop": {},
    "itemknn": {"neighbours": 20, "dims": 8},
    "cf": {"neighbours": 20, "dims": 8, "l2": 10.0},
    "sasrec": {
        "hidden": 32,
        "max_len": 10,
        "dropout": 0.1,
        "lr": 5e-3,
        "batch_size": 64,
        "max_epochs": 40,
        "patience": 5,
    },
}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(planted_dataset())


@pytest.fixture(scope="module")
def fitted(split):
    models = {}
    for kind, params in QUICK.items():
        model = build_model(kind, split.full.num_items, **params)
        model.fit(split.train, valid=split.valid, seed=0)
        models[kind] = model
    return models


def _ndcg10(model, split) -> float:
    return evaluate(model, split.test, num_items=split.full.num_items).full["NDCG@10"]


@pytest.mark.parametrize("kind", ["itemknn", "cf", "sasrec"])
def test_model_learns_the_planted_pattern_and_beats_popularity(kind, split, fitted) -> None:
    pop = _ndcg10(fitted["pop"], split)
    learned = _ndcg10(fitted[kind], split)
    assert learned > pop + 0.25, (kind, learned, pop)


def test_sasrec_learns_the_order_not_just_the_block(split, fitted) -> None:
    # Next item = last item + 1 within its block: an order-aware model puts it first.
    ranks = evaluate(fitted["sasrec"], split.test, num_items=split.full.num_items).ranks
    assert float((ranks == 0).mean()) > 0.8


@pytest.mark.parametrize("kind", ["pop", "itemknn", "cf", "sasrec"])
def test_checkpoint_round_trip_gives_equal_scores(kind, split, fitted, tmp_path) -> None:
    model = fitted[kind]
    model.eval()
    histories = [*split.test.histories[:20], np.array([], dtype=np.int64)]
    before = model.score(histories)
    save_checkpoint(model, tmp_path, item_index=split.full.item_index, extra={"run": 7})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == kind and config["extra"] == {"run": 7}
    state = torch.load(tmp_path / "model.pt", weights_only=True)  # tensors only: no pickled objects
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = load_checkpoint(tmp_path)
    assert loaded.item_index == split.full.item_index
    assert not loaded.model.training
    after = loaded.model.score(histories)
    assert after.shape == (len(histories), split.full.num_items + 1)
    assert torch.isneginf(after[:, 0]).all()
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("kind", ["itemknn", "cf", "sasrec"])
def test_similar_items_stay_in_the_same_block(kind, fitted, split) -> None:
    index = split.full.item_index
    query = index.index("i1")
    _scores, items = fitted[kind].similar_items([query], k=5)
    blocks = {(int(index.id_of(int(i))[1:]) - 1) // BLOCK_SIZE for i in items[0] if int(i) > 0}
    assert blocks == {0}
    assert fitted[kind].item_embeddings().shape[0] == split.full.num_items + 1


def test_sasrec_training_is_deterministic_with_a_seed(split) -> None:
    params = {**QUICK["sasrec"], "max_epochs": 2}
    a = build_model("sasrec", split.full.num_items, **params)
    b = build_model("sasrec", split.full.num_items, **params)
    a.fit(split.train, seed=3)
    b.fit(split.train, seed=3)
    torch.testing.assert_close(a.score(split.test.histories[:10]), b.score(split.test.histories[:10]))


def test_sasrec_scores_an_item_without_interactions_from_its_attributes() -> None:
    ds = planted_dataset()
    # Drop every event of item i5 (block 0): it stays in the catalog with its attribute only.
    cold = ds.item_index.index("i5")
    ds = ds.select(ds.items != cold)
    split = split_leave_one_out(ds)
    model = build_model("sasrec", ds.num_items, **{**QUICK["sasrec"], "max_epochs": 15})
    model.fit(split.train, seed=0)
    block0 = [ds.item_index.index(f"i{k}") for k in (1, 2, 3)]
    scores = model.score([block0])[0]
    other_blocks = [ds.item_index.index(f"i{k}") for k in range(BLOCK_SIZE + 1, ds.num_items + 1)]
    # The cold block-0 item outranks the average item of other blocks.
    assert scores[cold] > scores[other_blocks].mean()


def test_time_decayed_popularity_prefers_recent_items() -> None:
    from training.data import InteractionDataset

    day = 86400.0
    ds = InteractionDataset.from_events(
        ["u1", "u2", "u3", "u4"], ["old", "old", "old", "new"], [0.0, 0.0, 0.0, 100 * day]
    )
    plain = build_model("pop", ds.num_items)
    plain.fit(ds)
    decayed = build_model("pop", ds.num_items, half_life_days=7)
    decayed.fit(ds)
    old, new = ds.item_index.index("old"), ds.item_index.index("new")
    assert plain.score([[]])[0, old] > plain.score([[]])[0, new]
    assert decayed.score([[]])[0, new] > decayed.score([[]])[0, old]


def test_build_model_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("gru", 10)


def test_sasrec_with_sampled_softmax_also_learns_the_pattern(split, fitted) -> None:
    params = {**QUICK["sasrec"], "loss": "sampled", "num_negatives": 24}
    model = build_model("sasrec", split.full.num_items, **params)
    model.fit(split.train, valid=split.valid, seed=0)
    assert _ndcg10(model, split) > _ndcg10(fitted["pop"], split) + 0.25


def test_serving_modules_import_and_load_with_only_torch_and_numpy(split, fitted, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    save_checkpoint(fitted["sasrec"], tmp_path / "ck", item_index=split.full.item_index)
    code = (
        "import sys\n"
        "for name in ('scipy', 'tqdm', 'django', 'implicit', 'pandas', 'sklearn'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "import training.base, training.checkpoint, training.data, training.metrics\n"
        "from training.models import MODEL_KINDS, model_class\n"
        "[model_class(kind) for kind in MODEL_KINDS]\n"
        f"loaded = training.checkpoint.load_checkpoint({str(tmp_path / 'ck')!r})\n"
        "print(loaded.model.score([[1, 2]]).shape)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"torch.Size([1, {split.full.num_items + 1}])" in done.stdout
