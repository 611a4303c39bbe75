"""The ranking stage: ESMM's heads and loss by hand, the features, the AUC, the checkpoint, and
the model learning planted effects well enough to beat logistic regression and the retrieval score."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from training.ranker import build_ranker
from training.ranker.checkpoint import load_ranker_checkpoint, save_ranker_checkpoint
from training.ranker.esmm import ESMM, esmm_loss, log1mexp
from training.ranker.evaluate import auc, evaluate_rankers, split_impressions_by_time, within_group_auc
from training.ranker.features import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    CustomerFeatures,
    FeatureBatch,
    FeatureSpec,
    ItemFeatures,
)
from training.ranker.synthetic import synthetic_impressions

# ---- ESMM by hand -------------------------------------------------------------------------------


def _tiny_esmm() -> ESMM:
    """Two fields of 3 values, embedding width 1, one numeric feature, linear towers (no hidden
    layer): each logit is w . [emb(field0), emb(field1), x] + b, computable on paper."""
    model = ESMM(cardinalities=[3, 3], num_numeric=1, embedding_dim=1, hidden=[], dropout=0.0)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor([[0.0], [0.5], [-1.0], [0.0], [2.0], [0.25]]))
        ctr_lin = model.ctr_tower.layers[0]
        cvr_lin = model.cvr_tower.layers[0]
        ctr_lin.weight.copy_(torch.tensor([[1.0, 0.5, -2.0]]))
        ctr_lin.bias.fill_(-0.5)
        cvr_lin.weight.copy_(torch.tensor([[-1.0, 1.0, 0.5]]))
        cvr_lin.bias.fill_(0.25)
    return model.eval()


def _tiny_batch() -> FeatureBatch:
    return FeatureBatch(
        categorical=torch.tensor([[1, 1], [2, 2], [0, 1]]),
        numeric=torch.tensor([[0.5], [-1.0], [2.0]]),
        click=torch.tensor([1.0, 0.0, 1.0]),
        purchase=torch.tensor([1.0, 0.0, 0.0]),
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Field 1's table starts at row 3: ids (1, 1) -> rows 1 and 4, etc.
HAND = [
    # (field0 emb, field1 emb, x)
    (0.5, 2.0, 0.5),
    (-1.0, 0.25, -1.0),
    (0.0, 2.0, 2.0),
]
CTR_LOGITS = [1.0 * a + 0.5 * b - 2.0 * x - 0.5 for a, b, x in HAND]
CVR_LOGITS = [-1.0 * a + 1.0 * b + 0.5 * x + 0.25 for a, b, x in HAND]


def test_the_two_heads_give_pctr_and_pctcvr_as_computed_by_hand() -> None:
    model = _tiny_esmm()
    ctr, cvr = model.logits(_tiny_batch())
    assert ctr.tolist() == pytest.approx(CTR_LOGITS)
    assert cvr.tolist() == pytest.approx(CVR_LOGITS)
    p_ctr, p_ctcvr = model.predict(_tiny_batch())
    assert p_ctr.tolist() == pytest.approx([_sigmoid(a) for a in CTR_LOGITS])
    by_hand = [_sigmoid(a) * _sigmoid(b) for a, b in zip(CTR_LOGITS, CVR_LOGITS, strict=True)]
    assert p_ctcvr.tolist() == pytest.approx(by_hand)


def test_the_esmm_loss_is_ctr_and_ctcvr_cross_entropy_over_every_impression() -> None:
    model = _tiny_esmm()
    batch = _tiny_batch()
    loss = float(model.loss(batch).detach())
    clicks, buys = [1, 0, 1], [1, 0, 0]
    ctr_part = ctcvr_part = 0.0
    for a, b, y, z in zip(CTR_LOGITS, CVR_LOGITS, clicks, buys, strict=True):
        p = _sigmoid(a)
        q = p * _sigmoid(b)
        ctr_part -= y * math.log(p) + (1 - y) * math.log(1 - p)
        ctcvr_part -= z * math.log(q) + (1 - z) * math.log(1 - q)
    assert loss == pytest.approx((ctr_part + ctcvr_part) / 3, rel=1e-6)
    weighted = float(esmm_loss(*model.logits(batch), batch.click, batch.purchase, ctcvr_weight=2.0).detach())
    assert weighted == pytest.approx((ctr_part + 2 * ctcvr_part) / 3, rel=1e-6)


def test_the_cvr_head_learns_from_impressions_nobody_clicked() -> None:
    # Entire-space training: a batch without a single click still moves the CVR tower (through
    # pCTCVR), where a CVR model trained on clicked rows only would see nothing.
    model = _tiny_esmm()
    batch = _tiny_batch()
    batch.click = torch.zeros(3)
    batch.purchase = torch.zeros(3)
    model.loss(batch).backward()
    assert model.cvr_tower.layers[0].weight.grad is not None
    assert float(model.cvr_tower.layers[0].weight.grad.abs().sum()) > 0


def test_log1mexp_is_accurate_where_the_naive_formula_is_not() -> None:
    x = torch.tensor([-1e-10, -1e-5, -0.5, -5.0, -50.0], dtype=torch.float64)
    expected = [math.log(-math.expm1(float(v))) if v > -math.log(2) else math.log1p(-math.exp(float(v))) for v in x]
    assert log1mexp(x).tolist() == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(log1mexp(torch.tensor([-1e-12, -100.0]))).all()


# ---- AUC, features, split, checkpoint ------------------------------------------------------------


def test_auc_matches_scipys_mann_whitney_with_ties() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + labels * 0.7, 1)  # rounding makes ties
    u = mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert auc(labels, scores) == pytest.approx(u / (labels.sum() * (~labels).sum()))
    assert auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_within_position_auc_is_the_positives_weighted_mean_of_each_positions_mann_whitney_auc() -> None:
    rng = np.random.default_rng(5)
    positions = rng.integers(1, 5, size=2000)
    labels = rng.random(2000) < 0.5 / positions  # clicks fall with the position
    scores = np.round(rng.normal(size=2000) + labels * 0.5, 1)
    expected = total = 0.0
    for p in range(1, 5):
        y, s = labels[positions == p], scores[positions == p]
        u = mannwhitneyu(s[y], s[~y]).statistic
        expected += y.sum() * u / (y.sum() * (~y).sum())
        total += y.sum()
    assert within_group_auc(labels, scores, positions) == pytest.approx(expected / total)
    # A score that only knows the position: good over all rows, chance within each position.
    by_position = -positions.astype(float)
    assert auc(labels, by_position) > 0.6
    assert within_group_auc(labels, by_position, positions) == pytest.approx(0.5)
    assert math.isnan(within_group_auc([1, 0], [0.3, 0.2], [1, 2]))


@pytest.fixture(scope="module")
def table():
    return synthetic_impressions(customers=300, items=200, requests=4000, seed=0)


def test_the_time_split_keeps_the_newest_impressions_for_the_test(table) -> None:
    split = split_impressions_by_time(table, test_fraction=0.2, valid_fraction=0.1)
    assert len(split.train) + len(split.valid) + len(split.test) == len(table)
    assert split.train.timestamp.max() <= split.valid.timestamp.min()
    assert split.valid.timestamp.max() <= split.test.timestamp.min()
    assert len(split.test) == pytest.approx(0.2 * len(table), abs=1)


def test_the_feature_spec_survives_json_and_maps_unseen_values_to_zero(table) -> None:
    spec = FeatureSpec.fit(table)
    again = FeatureSpec.from_json(spec.to_json())
    first, second = spec.transform(table), again.transform(table)
    assert torch.equal(first.categorical, second.categorical)
    assert torch.allclose(first.numeric, second.numeric)
    assert first.categorical.shape == (len(table), len(CATEGORICAL_FIELDS))
    assert first.numeric.shape == (len(table), len(NUMERIC_FIELDS))
    # Standardised on the rows it was fitted on.
    assert first.numeric.mean(0).abs().max() < 1e-3
    assert json.loads(spec.to_json())["vocab"]["scene"] == ["cart", "home", "product"]
    cats, _ = spec.item_rows([ItemFeatures(category="never-seen", brand="nobody", price=10.0)])
    assert cats[0, :2].tolist() == [0, 0]
    _nums, cat_aff, _ = spec.customer_rows([CustomerFeatures(category_affinity={"cat1": 0.7, "unknown": 1.0})])
    assert float(cat_aff[0, spec.index["item_category"]["cat1"]]) == pytest.approx(0.7)
    assert float(cat_aff[0, 0]) == 0.0
    # Fixing the position changes that column only.
    fixed = spec.transform(table, position=1)
    column = CATEGORICAL_FIELDS.index("position")
    assert set(fixed.categorical[:, column].tolist()) == {1}
    others = [i for i in range(len(CATEGORICAL_FIELDS)) if i != column]
    assert torch.equal(fixed.categorical[:, others], first.categorical[:, others])


def test_a_checkpoint_round_trip_gives_the_same_predictions(table, tmp_path) -> None:
    spec = FeatureSpec.fit(table)
    batch = spec.transform(table)
    model = build_ranker("esmm", cardinalities=spec.cardinalities(), num_numeric=len(NUMERIC_FIELDS), max_epochs=1)
    model.fit(batch.subset(torch.arange(2000)), seed=0)
    save_ranker_checkpoint(model, tmp_path, spec=spec, items=table.items, extra={"note": "test"})
    loaded = load_ranker_checkpoint(tmp_path)
    assert loaded.extra == {"note": "test"}
    assert loaded.items == table.items
    for a, b in zip(model.predict(batch), loaded.model.predict(loaded.spec.transform(table)), strict=True):
        assert torch.allclose(a, b)


# ---- learning the planted effects ---------------------------------------------------------------


@pytest.mark.slow
def test_esmm_learns_the_planted_effects_and_beats_logistic_regression_and_the_retrieval_score(table) -> None:
    torch.set_num_threads(1)
    result, _, _ = evaluate_rankers(table, seed=0)
    got = result.logged_position
    esmm, lr, retrieval = got["esmm"], got["logreg"], got["retrieval_score"]
    # The planted effects are learnable: far better than chance and than retrieval, which knows
    # the taste only roughly and nothing of position, price or context.
    assert esmm["click_auc"] > 0.75 and esmm["purchase_auc"] > 0.8, got
    for metric in ("click_auc", "purchase_auc"):
        assert esmm[metric] > retrieval[metric] + 0.04, (metric, got)
        assert esmm[metric] > lr[metric], (metric, got)
    # Time of day x category and device x price are interactions a linear model cannot express.
    assert esmm["click_auc"] > lr["click_auc"] + 0.005, got
    # Scored at the serving position (no position information), the order still holds.
    fixed = result.serving_position
    assert fixed["esmm"]["click_auc"] > fixed["logreg"]["click_auc"] > fixed["retrieval_score"]["click_auc"], fixed


def test_the_shared_loop_keeps_the_epoch_with_the_best_validation_auc(table) -> None:
    split = split_impressions_by_time(table)
    spec = FeatureSpec.fit(split.train)
    train, valid = spec.transform(split.train), spec.transform(split.valid)
    model = build_ranker(
        "esmm", cardinalities=spec.cardinalities(), num_numeric=len(NUMERIC_FIELDS), max_epochs=4, patience=1, lr=0.05
    )
    report = model.fit(train, valid=valid, seed=0)
    assert len(report.history) == report.epochs and 1 <= report.best_epoch <= report.epochs
    p_ctr, p_ctcvr = model.predict(valid)
    assert auc(valid.click, p_ctr) == pytest.approx(report.best_valid["click_auc"])
    assert auc(valid.purchase, p_ctcvr) == pytest.approx(report.best_valid["purchase_auc"])
    best = max(row["valid_click_auc"] + row["valid_purchase_auc"] for row in report.history)
    assert report.best_valid["click_auc"] + report.best_valid["purchase_auc"] == pytest.approx(best)


def test_customer_profiles_and_popularity_come_from_the_events_in_the_window_only() -> None:
    from training.ranker.profiles import DAY, customer_profiles, item_popularity

    catalog = {
        "cheap-shoe": ItemFeatures(category="shoes", brand="acme", price=10.0),
        "dear-shoe": ItemFeatures(category="shoes", brand="posh", price=100.0),
        "mid-shoe": ItemFeatures(category="shoes", brand="acme", price=50.0),
        "hat": ItemFeatures(category="hats", brand="acme", price=20.0),
    }
    now = 100 * DAY
    customers = ["ann", "ann", "ann", "ann", "bob", "ann"]
    items = ["cheap-shoe", "cheap-shoe", "hat", "dear-shoe", "mid-shoe", "hat"]
    times = [now - 2 * DAY, now - 1 * DAY, now - 0.5 * DAY, now - 200 * DAY, now - 3 * DAY, now + DAY]
    profiles = customer_profiles(customers, items, times, item_table=catalog, now=now)
    ann = profiles["ann"]  # the event 200 days ago and the one after `now` do not count
    assert ann.activity == 3
    assert ann.recency_days == pytest.approx(0.5)
    assert ann.category_affinity == pytest.approx({"shoes": 2 / 3, "hats": 1 / 3})
    assert ann.brand_affinity == pytest.approx({"acme": 1.0})
    # Shoes' median price is 50: two cheap shoes below it; the hat is its category's median.
    assert ann.price_sensitivity == pytest.approx(2 / 3)
    assert profiles["bob"].price_sensitivity == 0.0
    assert item_popularity(items, times, now=now) == {"cheap-shoe": 2.0, "hat": 1.0, "mid-shoe": 1.0}


def test_the_rank_objectives_order_by_pctr_pctcvr_or_expected_revenue_and_say_so() -> None:
    from training.ranker.objective import rank_by, reason

    pctr, pctcvr, prices = [0.10, 0.05, 0.08, 0.08], [0.010, 0.020, 0.004, 0.004], [10.0, 20.0, 200.0, 5.0]
    assert rank_by("clicks", pctr=pctr, pctcvr=pctcvr)[0].tolist() == [0, 2, 3, 1]  # tie keeps retrieval order
    assert rank_by("purchases", pctr=pctr, pctcvr=pctcvr)[0].tolist() == [1, 0, 2, 3]
    order, values = rank_by("revenue", pctr=pctr, pctcvr=pctcvr, prices=prices)
    assert order.tolist() == [2, 1, 0, 3] and values.tolist() == pytest.approx([0.8, 0.4, 0.1, 0.02])
    assert reason("clicks", 0.0831) == "ranked by predicted clicks 0.083"
    assert reason("revenue", 0.8) == "ranked by predicted revenue 0.80"
    with pytest.raises(ValueError, match="prices"):
        rank_by("revenue", pctr=pctr, pctcvr=pctcvr)
    with pytest.raises(ValueError, match="unknown objective"):
        reason("margin", 1.0)
