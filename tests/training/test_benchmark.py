from __future__ import annotations

import json

import pytest

from training.benchmark import main

QUICK_SASREC = json.dumps({"hidden": 32, "max_epochs": 1, "max_len": 20})


@pytest.fixture
def beauty_slice(shared_data, tmp_path):
    """The first 1,000 Beauty users, and the attribute file as is."""
    source = shared_data / "amazon-beauty"
    lines = (source / "Beauty.txt").read_text().splitlines()[:1000]
    path = tmp_path / "beauty.txt"
    path.write_text("\n".join(lines) + "\n")
    histories = {line.split()[0]: line.split()[1:] for line in lines}
    return path, source / "Beauty_item2attributes.json", histories


@pytest.mark.data
@pytest.mark.parametrize(("model", "params"), [("sasrec", QUICK_SASREC)])
def test_benchmark_runs_end_to_end_on_a_slice_of_beauty(beauty_slice, tmp_path, capsys, model, params) -> None:
    data, attributes, histories = beauty_slice
    out = tmp_path / "out"
    argv = ["--format", "s3rec", "--data", str(data), "--attributes", str(attributes), "--model", model]
    assert main([*argv, "--out", str(out), "--seed", "1", "--params", params, "--no-progress"]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "coverage@10", "diversity@10"):
        assert 0.0 <= metrics["full"][key] <= 1.0
    assert metrics["epochs"] >= 1 and metrics["train_seconds"] >= 0 and metrics["peak_rss_mb"] > 0
    assert "sampled" not in metrics
    # The same trained model scored as before (SASRec: new items by attributes alone), same run.
    assert 0.0 <= metrics["before"]["full"]["NDCG@10"] <= metrics["before"]["full"]["HR@10"] <= 1.0
    lines = [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]
    assert len(lines) == 1000
    for line in lines[:50]:
        assert len(line["items"]) == 100
        seen = set(histories[line["user"]][:-1])  # the test history: everything but the target
        assert not seen & set(line["items"])
    assert (out / "checkpoint" / "model.pt").exists()
    printed = capsys.readouterr().out
    assert "NDCG@10" in printed and f"scored as before {metrics['before']['full']['NDCG@10']:.4f}" in printed


@pytest.mark.data
def test_benchmark_split_format_with_negatives_adds_sampled_metrics(beauty_slice, tmp_path) -> None:
    _, _, histories = beauty_slice
    users = list(histories)[:400]
    all_items = sorted({i for u in users for i in histories[u]})
    train, test, negatives = [], [], []
    for n, user in enumerate(users):
        seq = histories[user]
        train.extend(f"{user}\t{item}\t{t}" for t, item in enumerate(seq[:-1]))
        test.append(f"{user}\t{seq[-1]}\t{len(seq)}")
        negs = [i for i in all_items[n % 7 :: 37] if i not in seq][:20]
        negatives.append("\t".join([user, seq[-1], *negs]))
    for name, rows in (("train.tsv", train), ("test.tsv", test), ("negatives.tsv", negatives)):
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = ["--format", "split", "--data", str(tmp_path / "train.tsv"), "--test", str(tmp_path / "test.tsv")]
    argv += ["--negatives", str(tmp_path / "negatives.tsv"), "--model", "pop", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["sampled"]) >= {"HR@1", "HR@5", "NDCG@5", "HR@10", "NDCG@10", "MRR"}
    first = json.loads((out / "rankings.jsonl").read_text().splitlines()[0])
    user = first["user"]
    assert histories[user][-1] in first["candidate_scores"]
    assert len(first["candidate_scores"]) == 1 + len(negatives[0].split("\t")) - 2


def test_benchmark_rejects_params_that_are_not_a_json_object(tmp_path) -> None:
    with pytest.raises(SystemExit, match="JSON object"):
        main(["--format", "s3rec", "--data", "x", "--model", "pop", "--out", str(tmp_path), "--params", "[1]"])
