"""The benchmark command (its interface is fixed: other tools call it).

    python -m training.benchmark --format {s3rec,movielens,split} --data PATH [--attributes PATH]
        [--test PATH] [--negatives PATH] --model {pop,itemknn,cf,sasrec,hybrid} --out DIR [--seed N]
        [--protocol {full,sampled,cold-items}]

Trains on the training part, selects on validation, evaluates on test (training.trainer, the same
code the product calls), prints a table and writes DIR/metrics.json, DIR/rankings.jsonl and the
checkpoint in DIR/checkpoint. Extra options: --params JSON overrides model defaults (quick
settings for tests); --threads N (default 2).

Protocols (s3rec and movielens formats; training.protocols): `full` (default) is leave-one-out
with full ranking. `sampled` is the same split with the NCF metrics added: each test and
validation user's target ranked among 99 items they never rated (seeded by --seed; models that
select on validation select on the sampled NDCG@10). `cold-items` removes every interaction of a
seeded 10 % of the items (--cold-seed, default --seed) from training and tests the users whose
last item is one of them, full ranking; it also reports the other (warm) test users, two
baselines on both (popularity within the category of the last item, and attribute overlap with
the last items) and, for SASRec and the hybrid, the same trained model scoring as before (new
items by their attribute embeddings alone; the hybrid's main SASRec alone): warm-user quality
before and after in one run. The other protocols print the same comparison on their test users
("scored as before"), so the usual figures before and after come from one run as well.
"""

from __future__ import annotations

import os

# Other processes share this machine's cores: a spinning OpenMP thread waiting on a descheduled
# sibling costs more than it saves. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import sys
from pathlib import Path
from typing import Any

from training.data import InteractionDataset, Split, read_movielens, read_s3rec, read_split, split_leave_one_out
from training.metrics import format_table
from training.models import MODEL_KINDS
from training.protocols import (
    COLD_FRACTION,
    SAMPLED_NEGATIVES,
    ColdItemsSplit,
    cold_items_split,
    with_sampled_negatives,
)

TOP_N = 100


def load_dataset(args: argparse.Namespace) -> InteractionDataset:
    if args.format == "s3rec":
        return read_s3rec(args.data, args.attributes)
    if args.format == "movielens":
        return read_movielens(args.data)
    raise SystemExit(f"--format {args.format} has no single dataset to split")


def load_split(args: argparse.Namespace) -> Split:
    """The split of --format under --protocol full or sampled (bench scripts share it)."""
    protocol = getattr(args, "protocol", "full")
    if protocol == "cold-items":
        return load_cold_items(args).split
    if args.format == "split":
        if args.test is None:
            raise SystemExit("--format split needs --test PATH")
        if protocol != "full":
            raise SystemExit("--format split brings its own test (and --negatives): use --protocol full")
        return read_split(args.data, args.test, args.negatives)
    split = split_leave_one_out(load_dataset(args))
    if protocol == "sampled":
        split = with_sampled_negatives(split, count=SAMPLED_NEGATIVES, seed=int(getattr(args, "seed", 0)))
    return split


def load_cold_items(args: argparse.Namespace) -> ColdItemsSplit:
    seed = getattr(args, "cold_seed", None)
    if seed is None:
        seed = int(getattr(args, "seed", 0))
    fraction = float(getattr(args, "cold_fraction", COLD_FRACTION))
    return cold_items_split(load_dataset(args), fraction=fraction, seed=seed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--format", required=True, choices=["s3rec", "movielens", "split"])
    parser.add_argument("--data", required=True, help="sequence file, MovieLens directory, or train.tsv")
    parser.add_argument("--attributes", help="item2attributes.json (s3rec format)")
    parser.add_argument("--test", help="test.tsv (split format)")
    parser.add_argument("--negatives", help="negatives.tsv (split format): adds sampled metrics")
    parser.add_argument("--model", required=True, choices=list(MODEL_KINDS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="{}", help="JSON object overriding model defaults")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--protocol", default="full", choices=["full", "sampled", "cold-items"])
    parser.add_argument("--cold-seed", type=int, help="cold-items: seed of the item draw (default --seed)")
    parser.add_argument("--cold-fraction", type=float, default=COLD_FRACTION, help="cold-items: share of items")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.negatives and args.format != "split":
        raise SystemExit("--negatives is only read with --format split")
    try:
        params: dict[str, Any] = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise SystemExit("--params must be a JSON object")

    from tqdm import tqdm

    from training.checkpoint import save_checkpoint
    from training.trainer import train_and_evaluate

    cold = load_cold_items(args) if args.protocol == "cold-items" else None
    split = cold.split if cold is not None else load_split(args)
    full = split.full
    print(
        f"{full.num_users} users, {full.num_items} items, {full.num_interactions} interactions; "
        f"train {split.train.num_interactions}, valid {len(split.valid)}, test {len(split.test)} users",
        flush=True,
    )
    bar = tqdm(total=1000, disable=args.no_progress, desc=args.model, unit="‰", file=sys.stderr)

    def progress(fraction: float, stage: str, metrics: dict[str, float] | None) -> None:
        bar.n = int(fraction * 1000)
        bar.set_postfix_str(stage, refresh=False)
        bar.refresh()
        if metrics and "epoch" in metrics:
            shown = {k: round(v, 4) for k, v in metrics.items()}
            tqdm.write(f"epoch {int(metrics['epoch'])}: {shown}", file=sys.stderr)

    result = train_and_evaluate(
        split,
        args.model,
        params,
        progress=progress,
        seed=args.seed,
        top_n=TOP_N,
        with_candidates=split.test.negatives is not None,
        threads=args.threads,
    )
    bar.close()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    metrics: dict[str, Any] = {
        "full": result.test_metrics,
        "valid": result.valid_metrics,
        "train_seconds": round(result.train_seconds, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "epochs": result.report.epochs,
        "best_epoch": result.report.best_epoch,
        "fit_history": result.report.history,  # per epoch, or per candidate l2 for cf
        "params": result.params,
        "model": args.model,
        "seed": args.seed,
        "test_users": len(split.test),
    }
    if split.test.negatives is not None:
        metrics["sampled"] = result.sampled_metrics
    rows: dict[str, dict[str, float]] = {}
    if cold is not None:
        rows = _cold_items_figures(cold, result.model, metrics, args.model)
    else:
        before = _scored_as_before(result.model, [split.test], full.num_items)
        if before is not None:
            metrics["before"] = {"new_items": before[0], "full": before[1][0]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")

    item_ids = full.item_index.ids
    user_ids = full.user_ids
    assert result.test is not None and result.test.top is not None
    with open(out / "rankings.jsonl", "w", encoding="utf-8") as fh:
        for row, user_row in enumerate(split.test.users.tolist()):
            line: dict[str, Any] = {
                "user": user_ids[user_row],
                "items": [item_ids[i - 1] for i in result.test.top[row].tolist() if i > 0],
            }
            if result.test.candidate_scores is not None:
                line["candidate_scores"] = {
                    item_ids[i - 1]: round(s, 6) for i, s in result.test.candidate_scores[row].items()
                }
            fh.write(json.dumps(line) + "\n")
    save_checkpoint(result.model, out / "checkpoint", item_index=full.item_index, extra={"benchmark": metrics})

    if not rows:
        rows = {f"{args.model} test": result.test_metrics}
        if "before" in metrics:
            rows[f"{args.model} test, scored as before"] = metrics["before"]["full"]
    if result.valid_metrics:
        rows[f"{args.model} valid"] = result.valid_metrics
    print(format_table(rows))
    if split.test.negatives is not None:
        print(format_table({f"{args.model} sampled": result.sampled_metrics}))
    if cold is not None:
        print(_cold_items_summary(metrics, args.model))
    elif "before" in metrics:
        after, was = result.test_metrics["NDCG@10"], metrics["before"]["full"]["NDCG@10"]
        change = f"{(after / was - 1) * 100:+.1f} %" if was > 0 else "n/a"
        print(f"NDCG@10: {args.model} {after:.4f}, scored as before {was:.4f} ({change})")
    print(
        f"train_seconds {metrics['train_seconds']}  epochs {metrics['epochs']} (best {metrics['best_epoch']})  "
        f"peak_rss_mb {metrics['peak_rss_mb']}"
    )
    return 0


def _cold_items_figures(
    cold: ColdItemsSplit, model: Any, metrics: dict[str, Any], name: str
) -> dict[str, dict[str, float]]:
    """The warm test users' figures and both baselines' (cold and warm) into `metrics`; the rows
    of the printed table. Baselines count popularity on the refit data (what the test sees)."""
    from training.metrics import evaluate
    from training.protocols import BASELINES

    split = cold.split
    n = split.full.num_items
    seen = split.refit if split.refit is not None else split.train
    metrics["protocol"] = "cold-items"
    metrics["cold_items"] = int(cold.cold_items.size)
    metrics["cold_seed"] = split.info["cold_seed"]
    metrics["warm_test_users"] = len(cold.warm_test)
    metrics["cold"] = metrics["full"]
    metrics["warm"] = evaluate(model, cold.warm_test, num_items=n).full
    rows = {f"{name} cold": metrics["cold"]}
    metrics["baselines"] = {}
    for label, cls in BASELINES.items():
        baseline = cls(seen)
        figures = {
            "cold": evaluate(baseline, split.test, num_items=n).full,
            "warm": evaluate(baseline, cold.warm_test, num_items=n).full,
        }
        metrics["baselines"][label] = figures
        rows[f"{label} cold"] = figures["cold"]
    before = _attributes_alone(model, split.test, cold.warm_test, n)
    if before is not None:
        metrics["attributes_alone"] = before
        rows[f"{name} cold, new items by attributes alone"] = before["cold"]
    rows[f"{name} warm"] = metrics["warm"]
    if before is not None:
        rows[f"{name} warm, new items by attributes alone"] = before["warm"]
    for label, figures in metrics["baselines"].items():
        rows[f"{label} warm"] = figures["warm"]
    return {row: {k: v for k, v in m.items() if k in _COLD_COLUMNS} for row, m in rows.items()}


def _attributes_alone(model: Any, cold_test: Any, warm_test: Any, n: int) -> dict[str, Any] | None:
    """Cold and warm figures of the same trained model scoring as the retrieval model did before
    (SASRec: its new items by their attribute embeddings alone, as before the content tower; the
    hybrid: its main SASRec alone, likewise): warm-user quality before and after, in the same run.
    None for a model without that switch."""
    before = _scored_as_before(model, [cold_test, warm_test], n)
    if before is None:
        return None
    changed, (cold, warm) = before
    return {"new_items": changed, "cold": cold, "warm": warm}


def _scored_as_before(model: Any, eval_sets: list[Any], n: int) -> tuple[int, list[dict[str, float]]] | None:
    """The full-ranking figures on each of `eval_sets` with the model's `new_items_as_attributes`
    switch on, and how many new items it has; None for a model without the switch."""
    from training.metrics import evaluate

    switch = getattr(model, "new_items_as_attributes", None)
    if switch is None:
        return None
    with switch() as new_items:
        return new_items, [evaluate(model, eval_set, num_items=n).full for eval_set in eval_sets]


def _cold_items_summary(metrics: dict[str, Any], name: str) -> str:
    """The two comparisons the protocol is for, in one line each."""

    def change(after: float, before: float) -> str:
        return f"{(after / before - 1) * 100:+.1f} %" if before > 0 else "n/a"

    cold, warm = metrics["cold"]["NDCG@10"], metrics["warm"]["NDCG@10"]
    overlap = metrics["baselines"]["attribute_overlap"]["cold"]["NDCG@10"]
    lines = [f"cold NDCG@10: {name} {cold:.4f}, attribute overlap {overlap:.4f} ({change(cold, overlap)})"]
    before = metrics.get("attributes_alone")
    if before is not None:
        was = before["warm"]["NDCG@10"]
        lines.append(
            f"warm NDCG@10: {name} {warm:.4f}, with new items by attributes alone {was:.4f} ({change(warm, was)}); "
            f"cold by attributes alone {before['cold']['NDCG@10']:.4f}"
        )
    return "\n".join(lines)


_COLD_COLUMNS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "coverage@10")


if __name__ == "__main__":
    raise SystemExit(main())
