"""The hybrid retrieval model ("hybrid"): SASRec, a content expert and EASE as one product of experts.

Three models score every customer, and their log-probabilities are mixed:

- the main SASRec (the "sasrec" model, trained as it is on its own, new items by their attribute
  embeddings alone);
- a content expert: a second SASRec whose items are their attribute embeddings alone, so it scores
  an item without events as well as any other (`ContentExpert`);
- EASE (the "cf" model), which only scores items with events.

A trained item gets  log p_main + expert_weight x log p_expert + ease_weight x log softmax(tau x EASE);
a new item (no training events) gets  new_content_weight x (its content-tower score - the main
model's log-normaliser over the trained items) + new_expert_weight x log p_expert + new_offset.
Scoring in log-probabilities puts both kinds of item on one scale, so a new item enters a list
where the experts together make it likelier than the trained item it pushes out.

The mixing is chosen on validation: a seeded tenth of the trained items (with attributes) pose as
new. The content expert trains without their events, so in validation they are as new to it as
real new items are later; the content tower is fitted without them too. Of the grid's points, the
one with the best validation NDCG@10 on the customers whose target poses as new, among those whose
NDCG@10 on the other customers is at least the main model's alone with the posing items by their
attributes alone (what the retrieval model did before), with `hold_z` standard errors to spare,
wins. Ensembling also lifts the established
items (EASE and the expert add what the sequence model misses), and that lift is what pays for new
items' places. README, "Cold items", has the figures.

Costs: training is the three fits (about 4x SASRec's time), scoring two SASRec passes plus one
EASE product. Checkpoints are the three state_dicts under `main.`, `expert.` and `ease.`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from training.base import FitReport, ProgressCallback, Recommender
from training.metrics import mask_histories, ndcg, ndcg_gains, target_ranks
from training.models._common import finish_scores, seed_everything, tune_allocator
from training.models.cf import EASE
from training.models.sasrec import DEFAULTS as SASREC_DEFAULTS
from training.models.sasrec import SASRec

MIXING = ("expert_weight", "ease_weight", "ease_temperature", "new_content_weight", "new_expert_weight", "new_offset")
# SASRec's training knobs: set at the top level, they apply to both SASRecs.
SHARED = (
    "hidden", "blocks", "heads", "ffn_mult", "max_len", "dropout", "lr", "weight_decay", "batch_size",
    "max_epochs", "patience", "max_seconds", "precision",
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    **{k: SASREC_DEFAULTS[k] for k in SHARED},
    # Per-model parameters over the shared ones ("sasrec": the main model, "expert": the content
    # expert) and EASE's. fit() stores each model's full parameters here, so a checkpoint's config
    # rebuilds them.
    "sasrec": {},
    "expert": {},
    # A dense EASE matrix up to this many items ((n + 1)^2 floats: 590 MB at 12,000 items); beyond,
    # its top-k neighbour lists (Beauty's warm users keep most of the lift with the top 200).
    "ease": {"dense_max_items": 15000, "l2_grid": [20.0, 50.0, 100.0]},
    # The share of trained items (with attributes) that pose as new in validation.
    "posing_share": 0.1,
    # How sure validation must be that the other customers do not lose: their NDCG@10 difference to
    # the main model alone at least this many standard errors above zero (1.64: one-sided 95 %).
    "hold_z": 1.64,
    # The mixing (see the module docstring), chosen by fit() on validation; used as is without one.
    "expert_weight": 0.25,
    "ease_weight": 0.5,
    "ease_temperature": 20.0,
    "new_content_weight": 0.5,
    "new_expert_weight": 1.0,
    "new_offset": -1.0,
}
# The validation grid: (expert_weight), (ease_weight, ease_temperature), new_content_weight,
# new_expert_weight, new_offset.
GRID_EXPERT = (0.0, 0.25, 0.5, 0.75)
GRID_EASE = ((0.0, 20.0), (0.25, 50.0), (0.5, 20.0), (0.5, 50.0), (1.0, 20.0))
GRID_CONTENT = (0.0, 0.5, 1.0)
GRID_NEW_EXPERT = (0.5, 1.0, 1.5, 2.0)
GRID_OFFSET = tuple(float(c) for c in np.arange(-3.0, 3.01, 0.5))
_CHUNK = 1024
_NEG_INF = float("-inf")


class ContentExpert(SASRec):
    """SASRec whose items are their attribute embeddings alone (an item without attributes keeps
    its id): it scores an item without events as it scores any other."""

    def item_representations(self, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        keep = (~(self.item_attrs > 0).any(1)).to(torch.float32)
        if id_keep is not None:
            keep = keep * id_keep
        return super().item_representations(keep)


def add_weighted(base: torch.Tensor, weight: float, term: torch.Tensor) -> torch.Tensor:
    # 0 x -inf is NaN: a zero weight leaves the term out.
    return base + weight * term if weight else base


def count_above(sorted_rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per row, how many entries of the ascending row are > the row's value."""
    return sorted_rows.shape[1] - torch.searchsorted(sorted_rows, values.view(-1, 1), right=True).view(-1)


def _masked(scores: torch.Tensor, histories: Sequence[Sequence[int]]) -> torch.Tensor:
    return mask_histories(scores.clone(), histories)


class Hybrid(Recommender):
    kind = "hybrid"
    is_new: torch.Tensor
    content: torch.Tensor

    def __init__(self, num_items: int, **params: Any) -> None:
        super().__init__(num_items, **{**DEFAULTS, **params})
        shared = {k: self.params[k] for k in SHARED}
        p = self.params
        self.main = SASRec(num_items, **{**shared, **dict(p["sasrec"]), "new_items": "attributes"})
        self.expert = ContentExpert(num_items, **{**shared, **dict(p["expert"]), "new_items": "attributes"})
        self.ease = EASE(num_items, **{**DEFAULTS["ease"], **dict(p["ease"])})
        self.register_buffer("is_new", torch.zeros(num_items + 1, dtype=torch.bool))
        self.register_buffer("content", torch.zeros(num_items + 1, int(self.main.params["hidden"])))
        self._as_before = False
        self._cached_reps: tuple[torch.Tensor, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> Hybrid:
        self._cached_reps = None
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._cached_reps = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Both SASRecs' item representations, kept between calls in eval mode (building them
        is a pass over every item's attributes: most of a one-customer call's time otherwise)."""
        if self._cached_reps is not None and not self.training:
            return self._cached_reps
        reps = (self.main.item_representations().detach(), self.expert.item_representations().detach())
        if not self.training:
            self._cached_reps = reps
        return reps

    # ---- scoring ----------------------------------------------------------------------------
    def _parts(self, histories: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Per history, over every item: log p_main (new items' rows the content tower's score, both
        minus the normaliser over trained items), log p_expert and EASE's raw scores (new items
        -inf). Normalisers leave the history's own items out (they are masked downstream)."""
        main, expert = self.main, self.expert
        reps, expert_reps = self._representations()
        hidden = main.last_hidden(list(histories), reps)
        new = self.is_new
        logits = hidden @ reps.T
        logits[:, new] = _NEG_INF
        logits[:, 0] = _NEG_INF
        normaliser = torch.logsumexp(logits, 1, keepdim=True)
        main_lp = logits - normaliser
        main_lp[:, new] = (hidden @ self.content[new].T) - normaliser
        expert_logits = expert.last_hidden(list(histories), expert_reps) @ expert_reps.T
        expert_logits[:, 0] = _NEG_INF
        expert_lp = expert_logits - torch.logsumexp(_masked(expert_logits, histories), 1, keepdim=True)
        ease_raw = self.ease.score(histories)
        ease_raw[:, new] = _NEG_INF
        return {"main": main_lp, "expert": expert_lp, "ease": ease_raw}

    def _mix(self, parts: dict[str, torch.Tensor], histories: Sequence[Sequence[int]]) -> torch.Tensor:
        p = self.params
        new = self.is_new
        tau = float(p["ease_temperature"])
        ease = parts["ease"] * tau
        ease_lp = ease - torch.logsumexp(_masked(ease, histories), 1, keepdim=True)
        out = add_weighted(
            add_weighted(parts["main"], float(p["expert_weight"]), parts["expert"]), float(p["ease_weight"]), ease_lp
        )
        new_scores = float(p["new_offset"]) + add_weighted(
            add_weighted(
                torch.zeros_like(parts["main"][:, new]), float(p["new_content_weight"]), parts["main"][:, new]
            ),
            float(p["new_expert_weight"]),
            parts["expert"][:, new],
        )
        out[:, new] = new_scores
        return finish_scores(out)

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        tune_allocator()
        if self._as_before:
            return self.main.score(histories)
        if not len(histories):
            return torch.empty(0, self.num_items + 1)
        return torch.cat(
            [
                self._mix(self._parts(histories[i : i + _CHUNK]), histories[i : i + _CHUNK])
                for i in range(0, len(histories), _CHUNK)
            ]
        )

    def item_embeddings(self) -> torch.Tensor:
        """The main model's item representations, a new item's its content tower's: `similar` for a
        new item finds the trained items its attributes resemble."""
        with torch.no_grad():
            reps = self.main.item_representations().detach().clone()
            has_attrs = (self.main.item_attrs > 0).any(1)
            replace = self.is_new & has_attrs
            reps[replace] = self.content[replace]
            return reps

    @contextlib.contextmanager
    def new_items_as_attributes(self) -> Iterator[int]:
        """Within the block the model scores as the retrieval model did before: the main SASRec
        alone, new items by their attribute embeddings alone (the cold-items benchmark's "before").
        Yields how many items are new."""
        self._as_before = True
        try:
            yield int(self.is_new.sum())
        finally:
            self._as_before = False

    # ---- training ---------------------------------------------------------------------------
    def fit(
        self,
        dataset: Any,
        *,
        progress: ProgressCallback | None = None,
        seed: int = 0,
        valid: Any = None,
    ) -> FitReport:
        seed_everything(seed)

        def stage(lo: float, hi: float, name: str) -> ProgressCallback | None:
            if progress is None:
                return None
            callback = progress

            def inner(fraction: float, text: str, metrics: dict[str, float] | None) -> None:
                callback(lo + (hi - lo) * fraction, f"{name}: {text}", metrics)

            return inner

        validating = valid is not None and len(valid) > 0
        report = self.main.fit(dataset, progress=stage(0.0, 0.35, "sasrec"), seed=seed, valid=valid)
        trained = dataset.item_counts() > 0
        trained[0] = False
        has_attrs = (self.main.item_attrs > 0).any(1).numpy()
        learn = trained & has_attrs
        posing = np.zeros(self.num_items + 1, dtype=bool)
        if validating and learn.sum() >= 10:
            rng = np.random.default_rng(seed + 424242)
            candidates = np.nonzero(learn)[0]
            share = float(self.params["posing_share"])
            posing[rng.choice(candidates, size=max(1, int(candidates.size * share)), replace=False)] = True
        with_attributes = bool(int(self.main.params["num_attributes"]))
        if with_attributes:
            expert_valid = valid.subset(np.nonzero(~posing[valid.targets])[0]) if validating else None
            self.expert.fit(
                dataset.select(~posing[dataset.items]),
                progress=stage(0.35, 0.75, "content expert"),
                seed=seed,
                valid=expert_valid,
            )
        self.ease.fit(dataset, progress=stage(0.75, 0.9, "ease"), seed=seed, valid=valid if validating else None)
        if not with_attributes:
            # Nothing describes a new item: it never outranks a trained one.
            self.params.update(expert_weight=0.0, new_content_weight=0.0, new_expert_weight=0.0, new_offset=-1e9)
        elif validating and posing.any():
            if progress:
                progress(0.9, "choosing the mixing on validation", None)
            report.history.append(self._choose_mixing(valid, trained, learn, posing))
        self.is_new = torch.from_numpy(~trained)
        self.is_new[0] = False
        with torch.no_grad():
            self.content = self.main.content_representations(torch.from_numpy(learn))
        self.params["sasrec"] = dict(self.main.params)
        self.params["expert"] = dict(self.expert.params)
        self.params["ease"] = dict(self.ease.params)
        if progress:
            progress(1.0, "done", None)
        self.eval()
        return report

    @torch.no_grad()
    def _choose_mixing(
        self, valid: Any, trained: np.ndarray, learn: np.ndarray, posing: np.ndarray
    ) -> dict[str, float]:
        """Set the grid point with the best validation NDCG@10 on the customers whose target poses as
        new, among those keeping the others' NDCG@10 at least at the main model's alone (posing
        items by their attributes alone); returns the figures, a row of the fit's history."""
        self.is_new = torch.from_numpy(~trained | posing)
        self.is_new[0] = False
        self.content = self.main.content_representations(torch.from_numpy(learn & ~posing))
        histories = list(valid.histories)
        targets = torch.as_tensor(valid.targets, dtype=torch.long)
        new = self.is_new
        new_idx, old_idx = torch.nonzero(new).squeeze(1), torch.nonzero(~new).squeeze(1)[1:]
        cold_user = new[targets].numpy()
        grid = list(itertools.product(GRID_EXPERT, GRID_EASE, GRID_CONTENT, GRID_NEW_EXPERT, GRID_OFFSET))
        ranks = np.zeros((len(grid), len(histories)), dtype=np.int32)
        before = np.zeros(len(histories), dtype=np.int64)
        main_reps = self.main.item_representations().detach().clone()
        main_reps[torch.from_numpy(posing)] = (main_reps - self.main.item_emb.weight.detach())[torch.from_numpy(posing)]
        for start in range(0, len(histories), _CHUNK):
            hist, target = histories[start : start + _CHUNK], targets[start : start + _CHUNK]
            cold = torch.from_numpy(cold_user[start : start + _CHUNK]).view(-1, 1)
            before[start : start + _CHUNK] = target_ranks(
                _masked(self.main.last_hidden(hist, main_reps) @ main_reps.T, hist), target
            ).numpy()
            parts = {k: _masked(v, hist) for k, v in self._parts(hist).items()}
            at = target.view(-1, 1)
            main_old, expert_old = parts["main"][:, old_idx], parts["expert"][:, old_idx]
            main_new, expert_new = parts["main"][:, new_idx], parts["expert"][:, new_idx]
            main_t, expert_t = parts["main"].gather(1, at), parts["expert"].gather(1, at)
            ease_lp = {tau: torch.log_softmax(tau * parts["ease"], 1) for _, tau in GRID_EASE}
            new_sides = [
                (
                    add_weighted(add_weighted(torch.zeros_like(main_new), a, main_new), b, expert_new).sort(1).values,
                    add_weighted(add_weighted(torch.zeros_like(main_t), a, main_t), b, expert_t),
                )
                for a, b in itertools.product(GRID_CONTENT, GRID_NEW_EXPERT)
            ]
            point = 0
            for w, (v, tau) in itertools.product(GRID_EXPERT, GRID_EASE):
                old_scores = add_weighted(add_weighted(main_old, w, expert_old), v, ease_lp[tau][:, old_idx])
                warm_target = add_weighted(add_weighted(main_t, w, expert_t), v, ease_lp[tau].gather(1, at))
                sorted_old = old_scores.sort(1).values
                for sorted_new, cold_base in new_sides:  # GRID_CONTENT x GRID_NEW_EXPERT, in order
                    for c in GRID_OFFSET:
                        target_score = torch.where(cold, cold_base + c, warm_target).view(-1)
                        higher = count_above(sorted_old, target_score) + count_above(sorted_new, target_score - c)
                        ranks[point, start : start + _CHUNK] = higher.numpy()
                        point += 1
        cold_ndcg = np.array([ndcg(r[cold_user], 10) for r in ranks])
        warm_ndcg = np.array([ndcg(r[~cold_user], 10) for r in ranks])
        floor = ndcg(before[~cold_user], 10)
        # "Not below before" with a margin for validation's noise: the other customers' paired
        # NDCG@10 difference to before must be at least `hold_z` standard errors above zero (the
        # point tuned to validation's exact floor came out 0.7 % under it on Beauty's test users).
        before_gain = ndcg_gains(before[~cold_user], 10)
        lower = np.empty(len(grid))
        for i, r in enumerate(ranks):
            diff = ndcg_gains(r[~cold_user], 10) - before_gain
            lower[i] = diff.mean() - float(self.params["hold_z"]) * diff.std(ddof=1) / np.sqrt(max(diff.size, 1))
        allowed = np.nonzero(lower >= 0.0)[0]
        best = int(allowed[np.argmax(cold_ndcg[allowed])]) if allowed.size else int(np.argmax(warm_ndcg))
        w, (v, tau), a, b, c = grid[best]
        self.params.update(
            expert_weight=w,
            ease_weight=v,
            ease_temperature=tau,
            new_content_weight=a,
            new_expert_weight=b,
            new_offset=c,
        )
        return {
            **{f"chosen_{k}": float(self.params[k]) for k in MIXING},
            "valid_users_new": float(cold_user.sum()),
            "valid_NDCG@10_new": float(cold_ndcg[best]),
            "valid_NDCG@10_established": float(warm_ndcg[best]),
            "valid_NDCG@10_new_before": float(ndcg(before[cold_user], 10)),
            "valid_NDCG@10_established_before": float(floor),
            "valid_NDCG@10_established_lower_bound": float(floor + lower[best]),
        }
