"""The study behind the hybrid model's mixing (training/models/hybrid.py), on the test users too.

    python bench/cold_experts.py --data ../shared/data/amazon-beauty/Beauty.txt \
        --attributes ../shared/data/amazon-beauty/Beauty_item2attributes.json [--seed 0] \
        [--max-seconds 900] [--threads 2]

On the `--protocol cold-items` split of `training.benchmark` (same seed): the main SASRec (the
product's defaults), a second SASRec whose items are their attributes alone (the content expert)
and EASE (dense). A seeded tenth of the trained items pose as new in validation; the expert trains
without their events, so in validation they are as new to it as the real new items are in the
test. Scores in log-probabilities: a trained item log p_main + w log p_content + v log softmax(tau
x EASE), a new item a (its content-tower score - the main model's log-normaliser) + b log p_content
+ c. The grid point chosen is the best validation cold NDCG@10 whose warm NDCG@10 is at least the
attributes-alone representation's (the retrieval model before), with and without EASE. Prints it
on the test users with both references (the same model with new items by attributes alone, and by
the default content tower), attribute overlap, and the test users' own best points for comparison
(those flatter the method). The product's `hybrid` model makes the same choice inside fit();
`python -m training.benchmark --protocol cold-items --model hybrid` measures it as shipped.
Three fits (two of up to --max-seconds each), then some minutes of scoring."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data import EvalSet, read_s3rec
from training.metrics import evaluate, hit_rate, mask_histories, ndcg, target_ranks
from training.models.cf import EASE
from training.models.hybrid import ContentExpert, add_weighted, count_above
from training.models.sasrec import SASRec
from training.protocols import COLD_FRACTION, AttributeOverlap, cold_items_split

W = (0.0, 0.25, 0.5, 0.75)
# EASE's weight and temperature on the trained items: v log softmax(tau x_u B); (0, 0) leaves it out.
E = ((0.0, 0.0), (0.25, 50.0), (0.5, 20.0), (0.5, 50.0), (1.0, 20.0))
A = (0.0, 0.5, 1.0)
B = (0.5, 1.0, 1.5, 2.0)
C = tuple(float(c) for c in np.arange(-3.0, 3.01, 0.5))
GRID = list(itertools.product(W, E, A, B, C))
CHUNK = 1024
EASE_L2 = (20.0, 50.0, 100.0)


def _progress(label: str) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=label, unit="‰", file=sys.stderr)

    def report(fraction: float, stage: str, metrics: dict[str, float] | None) -> None:
        bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        bar.set_postfix_str(stage[:40])
        bar.refresh()

    return report


def grid_ndcg(
    main: SASRec,
    expert: SASRec,
    ease: EASE,
    eval_set: EvalSet,
    new_mask: np.ndarray,
    content: torch.Tensor,
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, int]]:
    """NDCG@10 and HR@10 (cold users, warm users) per grid point, and for the two single-model
    references; `new_mask` marks the items scored as new, `content` is the main model's content
    tower (scale 1)."""
    with torch.no_grad():
        reps = main.item_representations().detach()
        attr_part = reps - main.item_emb.weight.detach()
        expert_reps = expert.item_representations().detach()
    new = torch.from_numpy(new_mask.copy())
    new[0] = False
    trained = ~new
    trained[0] = False
    new_idx, trained_idx = torch.nonzero(new).squeeze(1), torch.nonzero(trained).squeeze(1)
    histories: list[Any] = list(eval_set.histories)
    targets = torch.as_tensor(eval_set.targets)
    hidden_main, hidden_expert = main.last_hidden(histories, reps), expert.last_hidden(histories, expert_reps)
    cold_user = new[targets].numpy()
    references = {"attributes alone": reps.clone(), "content tower (default)": reps.clone()}
    references["attributes alone"][new] = attr_part[new]
    references["content tower (default)"][new] = float(main.params["new_item_scale"]) * content[new]
    ranks = np.zeros((len(GRID), len(histories)), dtype=np.int32)
    ref_ranks = {name: np.zeros(len(histories), dtype=np.int64) for name in references}
    for start in range(0, len(histories), CHUNK):
        stop = start + CHUNK
        hist, target, cold = histories[start:stop], targets[start:stop], torch.from_numpy(cold_user[start:stop])
        h_main, h_expert = hidden_main[start:stop], hidden_expert[start:stop]
        for name, candidate in references.items():
            ref_ranks[name][start:stop] = target_ranks(mask_histories(h_main @ candidate.T, hist), target).numpy()
        logits = h_main @ reps.T
        logits[:, new] = float("-inf")
        logits[:, 0] = float("-inf")
        normaliser = torch.logsumexp(logits, 1, keepdim=True)  # over every trained item, seen ones too
        main_lp = mask_histories(logits - normaliser, hist)
        content_lp = mask_histories(h_main @ content.T, hist) - normaliser
        expert_lp = torch.log_softmax(mask_histories(h_expert @ expert_reps.T, hist), 1)
        ease_raw = ease.score(hist)
        ease_raw[:, new] = float("-inf")
        ease_raw = mask_histories(ease_raw, hist)
        main_t, expert_t, content_t = (x.gather(1, target.view(-1, 1)) for x in (main_lp, expert_lp, content_lp))
        main_tr, expert_tr = main_lp[:, trained_idx], expert_lp[:, trained_idx]
        content_new, expert_new = content_lp[:, new_idx], expert_lp[:, new_idx]
        ease_lp = {tau: torch.log_softmax(tau * ease_raw, 1) for _, tau in E if tau}
        point = 0  # GRID's order: w, (v, tau), a, b, then c
        for w, (v, tau) in itertools.product(W, E):
            trained_scores = add_weighted(main_tr, w, expert_tr)
            warm_target = add_weighted(main_t, w, expert_t)
            if v:
                trained_scores = trained_scores + v * ease_lp[tau][:, trained_idx]
                warm_target = warm_target + v * ease_lp[tau].gather(1, target.view(-1, 1))
            sorted_trained = trained_scores.sort(1).values
            for a, b in itertools.product(A, B):
                sorted_new = (
                    add_weighted(add_weighted(torch.zeros_like(expert_new), b, expert_new), a, content_new)
                    .sort(1)
                    .values
                )
                cold_base = add_weighted(add_weighted(torch.zeros_like(expert_t), b, expert_t), a, content_t)
                for c in C:
                    target_score = torch.where(cold.view(-1, 1), cold_base + c, warm_target).view(-1)
                    higher = count_above(sorted_trained, target_score) + count_above(sorted_new, target_score - c)
                    ranks[point, start:stop] = higher.numpy()
                    point += 1

    def split_metrics(r: np.ndarray) -> np.ndarray:
        return np.array(
            [ndcg(r[cold_user], 10), ndcg(r[~cold_user], 10), hit_rate(r[cold_user], 10), hit_rate(r[~cold_user], 10)]
        )

    grid = np.array([split_metrics(r) for r in ranks])
    refs = {name: split_metrics(r) for name, r in ref_ranks.items()}
    return grid, refs, (int(cold_user.sum()), int((~cold_user).sum()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/amazon-beauty/Beauty.txt")
    parser.add_argument("--attributes", default="../shared/data/amazon-beauty/Beauty_item2attributes.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not Path(args.data).exists() or not Path(args.attributes).exists():
        print(f"skipped: {args.data} or {args.attributes} is absent (see ../shared/data/SOURCES.md)")
        return 0
    torch.set_num_threads(args.threads)
    dataset = read_s3rec(args.data, args.attributes)
    cold = cold_items_split(dataset, fraction=COLD_FRACTION, seed=args.seed)
    split, n = cold.split, dataset.num_items
    trained = split.train.item_counts() > 0
    trained[0] = False
    rng = np.random.default_rng(args.seed + 424242)
    learnable = np.nonzero(trained)[0]
    posing = np.zeros(n + 1, dtype=bool)
    posing[rng.choice(learnable, size=learnable.size // 10, replace=False)] = True

    started = time.monotonic()
    main_model = SASRec(n, max_seconds=args.max_seconds)
    main_report = main_model.fit(split.train, valid=split.valid, seed=args.seed, progress=_progress("main SASRec"))
    expert = ContentExpert(n, max_seconds=args.max_seconds, new_items="attributes")
    expert_report = expert.fit(
        split.train.select(~posing[split.train.items]),
        valid=split.valid.subset(np.nonzero(~posing[split.valid.targets])[0]),
        seed=args.seed,
        progress=_progress("content expert"),
    )
    ease = EASE(n, dense_max_items=n, l2_grid=list(EASE_L2))
    ease_report = ease.fit(split.train, valid=split.valid, seed=args.seed, progress=_progress("EASE"))
    print(
        f"trained in {time.monotonic() - started:.0f} s: main {len(main_report.history)} epochs, "
        f"expert {len(expert_report.history)} epochs, EASE l2 {ease.params['l2']:g} "
        f"(validation {[round(row['valid_NDCG@10'], 4) for row in ease_report.history]})",
        flush=True,
    )

    with torch.no_grad():
        reps = main_model.item_representations().detach()
        has_attributes = (main_model.item_attrs > 0).any(1).numpy()
        learn = trained & has_attributes
        learn_valid = learn & ~posing

        def tower(on: np.ndarray) -> torch.Tensor:
            items = torch.from_numpy(np.nonzero(on)[0])
            return main_model._content(main_model._content_fit(items, reps[items]))

        content_test, content_valid = tower(learn), tower(learn_valid)
    valid_grid, valid_refs, valid_users = grid_ndcg(
        main_model, expert, ease, split.valid, ~trained | posing, content_valid
    )
    test_set = EvalSet(
        users=np.concatenate([split.test.users, cold.warm_test.users]),
        histories=list(split.test.histories) + list(cold.warm_test.histories),
        targets=np.concatenate([split.test.targets, cold.warm_test.targets]),
    )
    test_grid, test_refs, test_users = grid_ndcg(main_model, expert, ease, test_set, ~trained, content_test)
    overlap = evaluate(AttributeOverlap(split.train), split.test, num_items=n).full
    overlap_ndcg, overlap_hr = overlap["NDCG@10"], overlap["HR@10"]

    def show(m: np.ndarray) -> str:
        return f"cold {m[0]:.4f} / {m[2]:.4f}, warm {m[1]:.4f} / {m[3]:.4f}"

    print(f"validation users cold / warm {valid_users}, test users {test_users}; NDCG@10 / HR@10:")
    for name, m in test_refs.items():
        print(f"  test, main model, new items by {name}: {show(m)}")
    print(f"  test, attribute overlap: cold {overlap_ndcg:.4f} / {overlap_hr:.4f}")
    floor = valid_refs["attributes alone"][1]
    for label, with_ease in (("with EASE", True), ("without EASE", False)):
        allowed = [i for i in range(len(GRID)) if valid_grid[i, 1] >= floor and (with_ease or GRID[i][1][0] == 0.0)]
        if not allowed:
            print(f"{label}: no grid point keeps the validation warm figure at attributes alone")
            continue
        i = max(allowed, key=lambda j: valid_grid[j, 0])
        print(
            f"{label}, chosen on validation (warm >= attributes alone, {floor:.4f}): {GRID[i]}; "
            f"validation {show(valid_grid[i])}; TEST {show(test_grid[i])} (cold NDCG@10 "
            f"{test_grid[i, 0] / overlap_ndcg - 1:+.0%}, HR@10 {test_grid[i, 2] / overlap_hr - 1:+.0%} against "
            "attribute overlap)"
        )
    print(f"the ensemble's best warm NDCG@10 on the grid (test): {test_grid[:, 1].max():.4f}")
    attributes_alone = test_refs["attributes alone"][1]
    floors = {
        **{name: m[1] for name, m in test_refs.items()},
        "0.99 x attributes alone": 0.99 * attributes_alone,
    }
    for floor_name, warm_floor in floors.items():
        allowed = [j for j in range(len(GRID)) if test_grid[j, 1] >= warm_floor]
        if allowed:
            j = max(allowed, key=lambda k: test_grid[k, 0])
            print(
                f"best on the test users themselves with warm >= {floor_name} ({warm_floor:.4f}): "
                f"{GRID[j]} -> {show(test_grid[j])}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
