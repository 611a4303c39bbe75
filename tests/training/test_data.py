from __future__ import annotations

import json

import numpy as np
import pytest

from training.data import (
    IndexMap,
    InteractionDataset,
    read_movielens,
    read_s3rec,
    read_split,
    split_by_time,
    split_leave_one_out,
)


def test_index_map_reserves_zero_for_padding_and_round_trips_through_json() -> None:
    index = IndexMap(["sku-b", "sku-a"])
    assert index.index("sku-b") == 1
    assert index.index("sku-a") == 2
    assert index.get("missing") == 0
    assert index.add("sku-a") == 2
    assert index.lookup(["sku-a", "nope", "sku-b"]).tolist() == [2, 0, 1]
    with pytest.raises(IndexError):
        index.id_of(0)
    restored = IndexMap.from_json(index.to_json())
    assert restored == index
    assert restored.id_of(2) == "sku-a"
    assert IndexMap.from_json(json.loads(index.to_json())) == index


def test_index_map_rejects_duplicate_ids_in_json() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        IndexMap.from_json({"format": 1, "ids": ["a", "a"]})


def test_from_events_sorts_each_user_by_time_and_applies_type_weights() -> None:
    ds = InteractionDataset.from_events(
        users=["u2", "u1", "u1", "u1", "u2"],
        items=["x", "c", "a", "b", "y"],
        timestamps=[5.0, 30.0, 10.0, 20.0, 1.0],
        event_types=["view", "purchase", "view", "view", "purchase"],
        type_weights={"purchase": 4.0},
        item_attributes={"a": {"category": "shoes/running", "brand": "acme"}, "new": ["sale"]},
    )
    assert ds.user_ids == ["u1", "u2"]
    assert ds.item_index.ids_of(ds.sequence(0)) == ["a", "b", "c"]
    assert ds.item_index.ids_of(ds.sequence(1)) == ["y", "x"]
    assert ds.weights[ds.offsets[0] : ds.offsets[1]].tolist() == [1.0, 1.0, 4.0]
    # An item with attributes but no events is still in the catalog, with its attributes.
    assert "new" in ds.item_index
    tokens = {ds.attribute_index.id_of(int(a)) for a in ds.item_attributes(ds.item_index.index("a"))}
    assert tokens == {"category=shoes", "category=shoes/running", "brand=acme"}


def test_from_events_keeps_an_existing_index_map_stable() -> None:
    old = IndexMap(["b", "a"])
    ds = InteractionDataset.from_events(["u", "u"], ["a", "c"], [1.0, 2.0], item_index=old)
    assert ds.item_index.ids == ["b", "a", "c"]


def test_from_events_builds_a_million_rows_into_time_ordered_sequences() -> None:
    # Speed is for bench/ scripts, not a wall-clock assertion: the 15 s bound this test had failed on
    # loaded machines.
    rng = np.random.default_rng(0)
    n = 1_000_000
    users = rng.integers(0, 50_000, n).astype(str)
    items = rng.integers(0, 20_000, n).astype(str)
    ds = InteractionDataset.from_events(users, items, rng.random(n))
    assert ds.num_interactions == n
    for user in (0, 7, ds.num_users - 1):
        seq_times = ds.timestamps[ds.offsets[user] : ds.offsets[user + 1]]
        assert len(seq_times) > 0 and np.all(np.diff(seq_times) >= 0)


def test_leave_one_out_holds_out_last_for_test_and_second_last_for_validation() -> None:
    ds = InteractionDataset.from_sequences({"u1": ["a", "b", "c", "d"], "u2": ["a", "e"], "u3": ["f"]})
    split = split_leave_one_out(ds)
    ids = ds.item_index
    assert ids.ids_of(split.train.sequence(0)) == ["a", "b"]
    assert ids.ids_of(split.train.sequence(1)) == ["a"]
    assert ids.ids_of(split.train.sequence(2)) == ["f"]
    assert [ds.user_ids[u] for u in split.valid.users] == ["u1"]
    assert ids.id_of(int(split.valid.targets[0])) == "c"
    assert ids.ids_of(split.valid.histories[0]) == ["a", "b"]
    assert [ds.user_ids[u] for u in split.test.users] == ["u1", "u2"]
    assert ids.ids_of(split.test.targets) == ["d", "e"]
    assert ids.ids_of(split.test.histories[0]) == ["a", "b", "c"]
    # The refit data is every test history: training plus validation events, no test target.
    assert ids.ids_of(split.refit.sequence(0)) == ["a", "b", "c"]
    assert ids.ids_of(split.refit.sequence(1)) == ["a"]


def test_time_split_holds_out_everything_after_the_cutoffs() -> None:
    ds = InteractionDataset.from_events(
        users=["u1"] * 5 + ["u2"] * 3,
        items=["a", "b", "c", "d", "e", "a", "b", "c"],
        timestamps=[1, 2, 3, 4, 5, 1, 2, 6],
    )
    split = split_by_time(ds, valid_cutoff=3.0, test_cutoff=4.0)
    ids = ds.item_index
    assert ids.ids_of(split.train.sequence(0)) == ["a", "b", "c"]
    assert ids.ids_of(split.train.sequence(1)) == ["a", "b"]
    assert [ds.user_ids[u] for u in split.valid.users] == ["u1"]
    assert ids.ids_of(split.valid.targets) == ["d"]
    assert [ds.user_ids[u] for u in split.test.users] == ["u1", "u2"]
    assert ids.ids_of(split.test.targets) == ["e", "c"]
    assert ids.ids_of(split.test.histories[0]) == ["a", "b", "c", "d"]
    assert split.refit.num_interactions == 6


def test_time_split_skips_a_target_already_in_the_history() -> None:
    ds = InteractionDataset.from_events(["u"] * 4, ["a", "b", "a", "c"], [1, 2, 3, 4])
    split = split_by_time(ds, valid_cutoff=2.0, test_cutoff=2.0)
    assert ds.item_index.ids_of(split.test.targets) == ["c"]


def test_read_split_uses_latest_training_event_for_validation_and_reads_negatives(tmp_path) -> None:
    (tmp_path / "train.tsv").write_text("u1\ta\t10\nu1\tb\t30\nu1\tc\t20\nu2\tb\t5\n")
    (tmp_path / "test.tsv").write_text("u1\td\t40\nu2\ta\t9\nu3\ta\t9\n")
    (tmp_path / "neg.tsv").write_text("u1\td\ta\tc\nu2\ta\tc\td\n")
    split = read_split(tmp_path / "train.tsv", tmp_path / "test.tsv", tmp_path / "neg.tsv")
    ids = split.full.item_index
    assert ids.id_of(int(split.valid.targets[0])) == "b"  # latest by timestamp, not last line
    assert ids.ids_of(split.valid.histories[0]) == ["a", "c"]
    assert ids.ids_of(split.test.targets) == ["d", "a"]
    assert ids.ids_of(split.test.histories[0]) == ["a", "c", "b"]
    assert ids.ids_of(split.test.negatives[0]) == ["a", "c"]
    assert split.info["test_users_without_history"] == 1


def test_read_split_rejects_a_line_without_an_item(tmp_path) -> None:
    (tmp_path / "train.tsv").write_text("u1\n")
    (tmp_path / "test.tsv").write_text("u1\ta\n")
    with pytest.raises(ValueError, match=r"train\.tsv:1"):
        read_split(tmp_path / "train.tsv", tmp_path / "test.tsv")


def test_read_s3rec_keeps_numeric_item_order(tmp_path) -> None:
    (tmp_path / "seq.txt").write_text("7 10 2 3\n8 2 10\n")
    (tmp_path / "attrs.json").write_text(json.dumps({"2": [1, 2], "10": [2]}))
    ds = read_s3rec(tmp_path / "seq.txt", tmp_path / "attrs.json")
    assert ds.item_index.ids == ["2", "3", "10"]
    assert ds.item_index.ids_of(ds.sequence(0)) == ["10", "2", "3"]
    assert ds.attribute_matrix().shape == (4, 2)


@pytest.mark.data
def test_beauty_and_movielens_readers_match_the_documented_sizes(shared_data) -> None:
    beauty = read_s3rec(
        shared_data / "amazon-beauty" / "Beauty.txt", shared_data / "amazon-beauty" / "Beauty_item2attributes.json"
    )
    assert (beauty.num_users, beauty.num_items, beauty.num_interactions) == (22363, 12101, 198502)
    ml = read_movielens(shared_data / "ml-100k")
    assert (ml.num_users, ml.num_items, ml.num_interactions) == (943, 1682, 100000)
    assert ml.has_timestamps and ml.num_attributes > 18
