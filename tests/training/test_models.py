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


def _sasrec_with_a_cold_item(cold_id: str = "i5", validate: bool = False, **params):
    """SASRec on the planted data with every event of `cold_id` (block 0) removed: the item stays
    in the catalog with its block attribute only."""
    ds = planted_dataset()
    cold = ds.item_index.index(cold_id)
    ds = ds.select(ds.items != cold)
    split = split_leave_one_out(ds)
    model = build_model("sasrec", ds.num_items, **{**QUICK["sasrec"], "max_epochs": 15, **params})
    model.fit(split.train, seed=0, valid=split.valid if validate else None)
    return ds, cold, model


def _cold_item_wins(ds, cold, model) -> tuple[int, int]:
    """For each block-0 history of 3 items without the cold one: does the cold block-0 item outrank
    every item of the other blocks? (wins, histories)"""
    block0 = [ds.item_index.index(f"i{k}") for k in range(1, BLOCK_SIZE + 1)]
    other_blocks = [ds.item_index.index(f"i{k}") for k in range(BLOCK_SIZE + 1, ds.num_items + 1)]
    histories = [[block0[(s + j) % BLOCK_SIZE] for j in range(3)] for s in range(BLOCK_SIZE)]
    histories = [h for h in histories if cold not in h]
    scores = model.score(histories)
    return int((scores[:, cold] > scores[:, other_blocks].max(1).values).sum()), len(histories)


def test_sasrec_scores_an_item_without_interactions_from_its_content_representation() -> None:
    ds, cold, model = _sasrec_with_a_cold_item(validate=True)
    reps = model.item_representations().detach()
    trained = reps[[i for i in range(1, ds.num_items + 1) if i != cold]]
    # The content tower, scaled on validation, puts it on the trained items' scale.
    assert float(reps[cold].norm()) > 0.7 * float(trained.norm(dim=1).mean()), model.params["new_item_scale"]
    # For every block-0 history, the cold block-0 item outranks every item of the other blocks.
    wins, total = _cold_item_wins(ds, cold, model)
    assert wins == total
    # Its similar items are its block's.
    _sims, items = model.similar_items([cold], k=5)
    assert {(int(ds.item_index.id_of(int(i))[1:]) - 1) // BLOCK_SIZE for i in items[0]} == {0}


def test_sasrec_scores_its_new_items_by_attributes_alone_inside_the_switch_and_as_fitted_after() -> None:
    ds, cold, model = _sasrec_with_a_cold_item(validate=True)
    fitted_row = model.item_emb.weight[cold].detach().clone()
    histories = [[1, 2, 3], [2, 3, 4]]
    fitted_scores = model.score(histories)

    with model.new_items_as_attributes() as changed:
        inside = model.item_representations().detach()
        inside_scores = model.score(histories)

    assert changed == 1
    torch.testing.assert_close(inside[cold], model.attr_emb.weight[model.item_attrs[cold][0]])
    assert not torch.equal(inside_scores[:, cold], fitted_scores[:, cold])
    others = [i for i in range(1, ds.num_items + 1) if i != cold]
    torch.testing.assert_close(inside_scores[:, others], fitted_scores[:, others])
    assert torch.equal(model.item_emb.weight[cold], fitted_row)
    torch.testing.assert_close(model.score(histories), fitted_scores)


def test_sasrec_with_attribute_only_new_items_keeps_a_zero_id_row() -> None:
    ds, cold, model = _sasrec_with_a_cold_item(new_items="attributes", id_dropout=0.1)
    assert torch.count_nonzero(model.item_emb.weight[cold]) == 0  # no untrained id noise
    reps = model.item_representations()
    torch.testing.assert_close(reps[cold], model.attr_emb.weight[model.item_attrs[cold][0]])
    wins, total = _cold_item_wins(ds, cold, model)
    assert wins == total
    # Id dropout is what puts the attribute-only item on the warm items' scale: without it the
    # same item loses to some other block's item.
    ds, cold, plain = _sasrec_with_a_cold_item(new_items="attributes", id_dropout=0.0)
    assert _cold_item_wins(ds, cold, plain)[0] < total


def test_content_tower_fit_is_the_ridge_closed_form() -> None:
    """The sparse conjugate-gradient fit against numpy's dense solution of the normal equations."""
    model = build_model("sasrec", 30, hidden=8, num_attributes=7, max_attributes=3, content_l2=0.5)
    rng = np.random.default_rng(1)
    attrs = np.zeros((31, 3), dtype=np.int64)
    for item in range(1, 31):
        chosen = rng.choice(np.arange(1, 8), size=int(rng.integers(0, 4)), replace=False)
        attrs[item, : chosen.size] = chosen
    model.item_attrs = torch.from_numpy(attrs)
    items = np.arange(3, 31)
    targets = rng.normal(size=(items.size, 8))
    x = np.zeros((31, 8))
    for item in range(31):
        present = attrs[item][attrs[item] > 0]
        x[item, present] = 1.0 / max(present.size, 1)
    x[:, 0] = 0.0
    xi = x[items]
    expected = np.linalg.solve(xi.T @ xi + 0.5 * np.eye(8), xi.T @ targets)
    weights = model._content_fit(torch.from_numpy(items), torch.from_numpy(targets).float())
    np.testing.assert_allclose(weights.numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(model._content(weights).numpy(), x @ expected, atol=1e-4)


def test_sasrec_ranks_cold_items_from_their_attributes_above_popularity_and_chance() -> None:
    """Planted data, cold-items protocol: a tenth of the items lose every event; the users whose
    last item is one of them get it in the model's top 10 far more often than from popularity
    (which never shows a new item) or from a random order."""
    from training.protocols import cold_items_split

    ds = planted_dataset()
    cold = cold_items_split(ds, fraction=0.1, seed=3)
    split = cold.split
    model = build_model("sasrec", ds.num_items, **{**QUICK["sasrec"], "max_epochs": 15})
    model.fit(split.train, valid=split.valid, seed=0)
    assert model.params["new_item_scale"] > 0
    assert len(split.test) >= 30
    hr10 = evaluate(model, split.test, num_items=ds.num_items).full["HR@10"]
    pop = build_model("pop", ds.num_items)
    pop.fit(split.train)
    pop_hr10 = evaluate(pop, split.test, num_items=ds.num_items).full["HR@10"]
    chance = 10 / (ds.num_items - 5)  # about 5 history items masked
    assert hr10 > 0.6 and hr10 > pop_hr10 + 0.5 and hr10 > 5 * chance, (hr10, pop_hr10)
    # Warm users keep their figures: the new items do not crowd out the learned next item.
    warm = evaluate(model, cold.warm_test, num_items=ds.num_items).full["HR@10"]
    assert warm > 0.9
    # Weighing the new items' hits more on validation buys them a scale at least as large.
    eager = build_model("sasrec", ds.num_items, **{**QUICK["sasrec"], "max_epochs": 15, "new_item_weight": 50.0})
    eager.fit(split.train, valid=split.valid, seed=0)
    assert eager.params["new_item_scale"] >= model.params["new_item_scale"]


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


# ---- cf (EASE): the dense matrix and the choice of l2 -------------------------------------------
def _noisy_blocks(num_users: int = 200, blocks: int = 24, seed: int = 0):
    """Each user picks 5 of their block's 10 items (the last two are the held-out ones) after a
    few popular noise items (Zipf over the whole catalog). More items (240) than users: an
    unregularised EASE memorises; a huge l2 reduces it to popularity-biased co-occurrence."""
    from training.data import InteractionDataset

    rng = np.random.default_rng(seed)
    n_items = blocks * 10
    pop = 1.0 / np.arange(1, n_items + 1) ** 1.2
    pop /= pop.sum()
    users, items, times = [], [], []
    for u in range(num_users):
        own = rng.choice(10, size=5, replace=False) + (u % blocks) * 10 + 1
        noise = rng.choice(n_items, size=4, replace=False, p=pop) + 1
        seq = [i for i in noise if i not in own] + list(own)
        users += [f"u{u}"] * len(seq)
        items += [f"i{i}" for i in seq]
        times += list(range(len(seq)))
    return InteractionDataset.from_events(users, items, times)


def test_ease_chooses_the_l2_that_validates_best_and_it_beats_both_extremes() -> None:
    split = split_leave_one_out(_noisy_blocks())
    n = split.full.num_items
    grid = [0.01, 1.0, 1e5]
    single = {}
    for l2 in grid:
        model = build_model("cf", n, l2=l2, l2_grid=[], neighbours=20, dims=8)
        model.fit(split.train)
        single[l2] = (
            evaluate(model, split.valid, num_items=n).full["NDCG@10"],
            evaluate(model, split.test, num_items=n).full["NDCG@10"],
        )
    chosen = build_model("cf", n, l2_grid=grid, neighbours=20, dims=8)
    report = chosen.fit(split.train, valid=split.valid)
    assert chosen.params["l2"] == 1.0 == max(grid, key=lambda v: single[v][0])
    assert [row["l2"] for row in report.history] == grid
    assert report.best_valid["NDCG@10"] == pytest.approx(single[1.0][0])
    # The validation choice is also the best on test, clearly: neither memorising nor smoothing.
    assert single[1.0][1] > max(single[0.01][1], single[1e5][1]) + 0.05
    # A refit without validation keeps the chosen value.
    chosen.fit(split.refit)
    assert chosen.params["l2"] == 1.0


def test_dense_ease_scores_are_the_closed_form_x_times_b() -> None:
    ds = _noisy_blocks(num_users=60, blocks=4)
    n = ds.num_items
    model = build_model("cf", n, l2=3.0, l2_grid=[], neighbours=5, dims=4)
    model.fit(ds)
    assert model.dense_b.shape == (n + 1, n + 1)
    x = np.zeros((ds.num_users, n + 1))
    for u, seq in enumerate(ds.sequences()):
        x[u, seq] = 1.0
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(n + 1))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    histories = [ds.sequence(u) for u in range(10)] + [np.array([5, 5, 7])]
    expected = np.stack([x[u] @ b for u in range(10)] + [b[5] + b[7]])
    got = model.score(histories).numpy()
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:], rtol=1e-3, atol=1e-4)
    assert np.isneginf(got[:, 0]).all()
    # negative weights are kept: that is what the neighbour lists drop
    assert (got[:, 1:] < 0).any()


def test_ease_beyond_dense_max_items_scores_with_neighbour_lists() -> None:
    split = split_leave_one_out(planted_dataset())
    model = build_model("cf", split.full.num_items, dense_max_items=10, l2_grid=[], neighbours=20, dims=8, l2=10.0)
    model.fit(split.train)
    assert model.dense_b.numel() == 0
    assert _ndcg10(model, split) > 0.5


def test_ease_loads_a_checkpoint_from_before_the_dense_matrix(split, fitted, tmp_path) -> None:
    model = fitted["cf"]
    save_checkpoint(model, tmp_path, item_index=split.full.item_index)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    del state["dense_b"]
    torch.save(state, tmp_path / "model.pt")
    loaded = load_checkpoint(tmp_path).model
    assert loaded.dense_b.numel() == 0
    histories = split.test.histories[:5]
    expected = build_model("cf", split.full.num_items, **{**model.params, "dense_max_items": 0})
    state = {k: v for k, v in model.state_dict().items() if k != "dense_b"}
    expected.load_state_dict({**state, "dense_b": torch.zeros(0, 0)})
    torch.testing.assert_close(loaded.score(histories), expected.score(histories))
