"""SASRec-style Transformer over the behaviour sequence (Kang & McAuley 2018), trained with
cross-entropy over the whole catalog.

Item representation = id embedding + mean of its attribute embeddings (category, brand...); the
same table is the output layer. New items are scored from their attributes: an item without
training events is left out of the training softmax (it is never pushed down as a negative for
lack of events) and, after training, gets the content tower's representation (`new_items=
"content"`: a ridge regression from attributes to the trained items' representations, times a
scale chosen on validation with a tenth of the trained items posing as new); with
`new_items="attributes"` it keeps a zero id embedding (its attribute embeddings alone, much
shorter than a trained item's). With `id_dropout` > 0 training drops each item's id embedding with
that probability per step, so the attribute part learns to carry an item on its own. Learned
positions are counted from the end of the sequence, causal self-attention (pre-LN), and the loss
is computed only at real (non-padding) positions, each weighted by its target event's type weight.
`loss="sampled"` swaps the full softmax for a sampled one for very large catalogs. Early stopping
on validation NDCG@10 keeps the best epoch's weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.base import FitReport, ProgressCallback, Recommender
from training.loop import Validation, run_epochs
from training.models._common import bf16_supported, finish_scores, pad_left, seed_everything, tune_allocator

DEFAULTS: dict[str, Any] = {
    "hidden": 64,
    "blocks": 2,
    "heads": 1,
    "ffn_mult": 1,
    "max_len": 50,
    "dropout": 0.3,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "batch_size": 256,
    "max_epochs": 200,
    "patience": 5,
    # Time budget: no epoch starts that would end after this many seconds; the best epoch is kept.
    "max_seconds": 840.0,
    "loss": "full",  # or "sampled"
    "num_negatives": 512,  # for loss="sampled"
    "use_attributes": True,
    # Per training step, the share of items (with attributes) represented by their attributes alone.
    # Off by default until a converged Beauty run shows it keeps the warm figures (0.1 is the
    # value the cold-items runs used).
    "id_dropout": 0.0,
    # Items without training events: "content" represents them by a linear content tower (ridge
    # regression from an item's attributes to the trained items' representations) scaled by the
    # factor that validates best with a seeded tenth of the trained items posing as new;
    # "attributes" by their attribute embeddings alone (much shorter vectors than a trained item's:
    # they never reach a top 10).
    "new_items": "content",
    "content_l2": 0.1,
    # How much a validation hit on a new item counts against one on an established item when the
    # scale is chosen: 1 weighs every customer alike (the scale that validates best overall; new
    # items reach a list only where they earn it). Higher values buy new items exposure (and
    # cold-item accuracy) with established items' accuracy: README, "Cold items".
    "new_item_weight": 1.0,
    # Filled in by fit(): the content scale chosen on validation (used as is when fit() has no
    # validation set, e.g. a refit).
    "new_item_scale": 1.0,
    # "auto": the catalog-sized matrix products of the training loss in bfloat16 where the CPU has
    # native bf16 (float32 elsewhere); "float32" to switch that off.
    # Scoring always runs in float32.
    "precision": "auto",
    # Filled in by fit() from the data; needed to rebuild the buffers before load_state_dict.
    "num_attributes": 0,
    "max_attributes": 1,
}
MAX_ATTRIBUTES = 16
# Scales tried for new items' content representations: 1 is the regression's own (an "average"
# item with those attributes, which seldom reaches a top 10); never below, so a new item keeps a
# direction for `similar_to`.
_NEW_ITEM_SCALES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
_SCORE_CHUNK = 256


class _FullSoftmaxCE(torch.autograd.Function):
    """Weighted cross-entropy over the whole catalog with one (P, items) buffer.

    The logits are the largest tensor of training by far: forward keeps one float32 copy, and
    backward turns it into the softmax gradient in place instead of autograd's several passes.
    The two matrix products run in bfloat16 when asked (float32 accumulation inside oneDNN).
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        reps: torch.Tensor,
        targets: torch.Tensor,
        w: torch.Tensor,
        bf16: bool,
        blocked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # (bf16 products accumulate in float32 inside oneDNN; the result is float32 either way)
        logits = (hidden.to(torch.bfloat16) @ reps.to(torch.bfloat16).T).float() if bf16 else hidden @ reps.T
        logits[:, 0] = float("-inf")
        if blocked is not None:
            logits[:, blocked] = float("-inf")  # items that are not candidates in training
        lse = torch.logsumexp(logits, dim=1)
        picked = logits.gather(1, targets.view(-1, 1)).squeeze(1)
        ctx.save_for_backward(hidden, reps, targets, w, logits, lse)
        ctx.bf16 = bf16
        return ((lse - picked) * w).sum()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        hidden, reps, targets, w, logits, lse = ctx.saved_tensors
        grad = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax, in place
        grad[torch.arange(grad.shape[0]), targets] -= 1.0
        grad.mul_((w * grad_out).unsqueeze(1))
        if ctx.bf16:
            g = grad.to(torch.bfloat16)
            grad_hidden = (g @ reps.to(torch.bfloat16)).to(hidden.dtype)
            grad_reps = (g.T @ hidden.to(torch.bfloat16)).to(reps.dtype)
        else:
            grad_hidden = grad @ reps
            grad_reps = grad.T @ hidden
        return grad_hidden, grad_reps, None, None, None, None


class _Block(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden * ffn_mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden * ffn_mult, hidden),
        )
        self.drop = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        b, _, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).split(d, dim=2)
        if last_only:
            # Scoring needs the last position only: its query attends to every key.
            q, mask, x = q[:, -1:], mask[:, :, -1:], x[:, -1:]
        heads = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, t.shape[1], heads, d // heads).transpose(1, 2)

        att = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        att = att.transpose(1, 2).reshape(b, q.shape[1], d)
        x = x + self.drop(self.proj(att))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(Recommender):
    kind = "sasrec"
    item_attrs: torch.Tensor

    def __init__(self, num_items: int, **params: Any) -> None:
        super().__init__(num_items, **{**DEFAULTS, **params})
        p = self.params
        d = int(p["hidden"])
        if d % int(p["heads"]):
            raise ValueError("hidden must be divisible by heads")
        if p["new_items"] not in ("content", "attributes"):
            raise ValueError(f"new_items must be 'content' or 'attributes', not {p['new_items']!r}")
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.attr_emb = nn.Embedding(int(p["num_attributes"]) + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(int(p["max_len"]), d)
        self.emb_drop = nn.Dropout(float(p["dropout"]))
        self.blocks = nn.ModuleList(
            _Block(d, int(p["heads"]), int(p["ffn_mult"]), float(p["dropout"])) for _ in range(int(p["blocks"]))
        )
        self.ln_out = nn.LayerNorm(d)
        self.register_buffer("item_attrs", torch.zeros(num_items + 1, int(p["max_attributes"]), dtype=torch.long))
        self._cached_repr: torch.Tensor | None = None
        self._cached_repr_t: torch.Tensor | None = None
        # The items fit() gave the content tower's representation (not saved: a fresh fit's own).
        self._content_items: torch.Tensor | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                nn.init.xavier_normal_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.attr_emb.weight[0].zero_()

    # ---- representation -----------------------------------------------------------------------
    def item_representations(self, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(num_items + 1, hidden): id embedding + mean attribute embedding; row 0 is zero.
        `id_keep` (num_items + 1,) 0/1 drops the id part of some items (training's id dropout)."""
        rep = self.item_emb.weight
        if id_keep is not None:
            rep = rep * id_keep.unsqueeze(1)
        if self.params["use_attributes"] and self.item_attrs.shape[1] and int(self.params["num_attributes"]):
            attrs = self.item_attrs
            counts = (attrs > 0).sum(1, keepdim=True).clamp(min=1).to(rep.dtype)
            rep = rep + self.attr_emb(attrs).sum(1) / counts
        return rep

    def train(self, mode: bool = True) -> SASRec:
        self._cached_repr = None
        return super().train(mode)

    def _encode(self, seqs: torch.Tensor, reps: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Hidden states (B, L, d), or (B, 1, d) for the last position, of left-padded sequences."""
        length = seqs.shape[1]
        d = reps.shape[1]
        max_len = int(self.params["max_len"])
        positions = torch.arange(max_len - length, max_len)
        x = reps[seqs] * math.sqrt(d) + self.pos_emb(positions).unsqueeze(0)
        real = seqs > 0
        x = self.emb_drop(x) * real.unsqueeze(2)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        # Keys: earlier real items, and always the query itself (so a padding row is never empty).
        mask = (causal.unsqueeze(0) & real.unsqueeze(1)) | torch.eye(length, dtype=torch.bool).unsqueeze(0)
        mask = mask.unsqueeze(1)  # (B, 1, L, L) broadcast over heads
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1)
            if x.shape[1] == length:
                x = x * real.unsqueeze(2)
        return self.ln_out(x)

    # ---- contract -----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        tune_allocator()
        if self.training:
            self.eval()
        if self._cached_repr is None:
            self._cached_repr = self.item_representations().detach().contiguous()
            self._cached_repr_t = self._cached_repr.T.contiguous()
        reps = self._cached_repr
        n = len(histories)
        max_len = int(self.params["max_len"])
        hidden = torch.empty(n, reps.shape[1])
        # Similar lengths together: a batch is only as wide as its longest history.
        order = np.argsort([min(len(h), max_len) for h in histories], kind="stable")
        for start in range(0, n, _SCORE_CHUNK):
            rows = order[start : start + _SCORE_CHUNK]
            seqs = pad_left([histories[int(i)] for i in rows], max_len)
            hidden[torch.from_numpy(rows)] = self._encode(seqs, reps, last_only=True)[:, -1]
        # One product straight into the result: the (n, items) matrix is written exactly once.
        out = torch.empty(n, self.num_items + 1)
        assert self._cached_repr_t is not None
        torch.mm(hidden, self._cached_repr_t, out=out)
        return finish_scores(out)

    @torch.no_grad()
    def last_hidden(self, histories: Sequence[Sequence[int]], reps: torch.Tensor) -> torch.Tensor:
        """(n, hidden): each history's state at its last position, with item representations `reps`
        (what a customer's scores are the dot products with), in history order."""
        max_len = int(self.params["max_len"])
        return torch.cat(
            [
                self._encode(pad_left(histories[i : i + _SCORE_CHUNK], max_len), reps, last_only=True)[:, -1]
                for i in range(0, len(histories), _SCORE_CHUNK)
            ]
        )

    def item_embeddings(self) -> torch.Tensor:
        with torch.no_grad():
            return self.item_representations().detach().clone()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._cached_repr = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---- training -----------------------------------------------------------------------------
    def _set_attributes(self, dataset: Any) -> None:
        if not self.params["use_attributes"] or dataset.num_attributes == 0:
            return
        matrix = torch.from_numpy(dataset.attribute_matrix(MAX_ATTRIBUTES))
        d = int(self.params["hidden"])
        self.params["num_attributes"] = dataset.num_attributes
        self.params["max_attributes"] = int(matrix.shape[1])
        self.attr_emb = nn.Embedding(dataset.num_attributes + 1, d, padding_idx=0)
        nn.init.xavier_normal_(self.attr_emb.weight)
        with torch.no_grad():
            self.attr_emb.weight[0].zero_()
        self.item_attrs = matrix

    def _training_arrays(self, dataset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per user with >= 2 events: inputs seq[:-1] and targets seq[1:] (last max_len), right-aligned."""
        max_len = int(self.params["max_len"])
        lengths = dataset.lengths()
        users = np.nonzero(lengths >= 2)[0]
        inputs = np.zeros((users.size, max_len), dtype=np.int64)
        targets = np.zeros((users.size, max_len), dtype=np.int64)
        weights = np.zeros((users.size, max_len), dtype=np.float32)
        for row, u in enumerate(users):
            lo, hi = dataset.offsets[u], dataset.offsets[u + 1]
            seq = dataset.items[lo:hi]
            w = dataset.weights[lo:hi]
            m = min(seq.size - 1, max_len)
            inputs[row, max_len - m :] = seq[-m - 1 : -1]
            targets[row, max_len - m :] = seq[-m:]
            weights[row, max_len - m :] = w[-m:]
        return inputs, targets, weights, np.minimum(lengths[users] - 1, max_len)

    def _loss(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor,
        reps: torch.Tensor,
        bf16: bool,
        candidates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`candidates`: the item indices with training events (None: all); the others never
        compete in the softmax."""
        if self.params["loss"] == "sampled":
            count = (int(self.params["num_negatives"]),)
            if candidates is None:
                negs = torch.randint(1, self.num_items + 1, count)
            else:
                negs = candidates[torch.randint(0, candidates.numel(), count)]
            pos_logit = (hidden * reps[targets]).sum(1, keepdim=True)
            neg_logits = hidden @ reps[negs].T
            neg_logits = neg_logits.masked_fill(negs.view(1, -1) == targets.view(-1, 1), float("-inf"))
            logits = torch.cat([pos_logit, neg_logits], dim=1)
            losses = F.cross_entropy(logits, torch.zeros_like(targets), reduction="none")
            return (losses * weights).sum() / weights.sum().clamp(min=1e-9)
        blocked = None
        if candidates is not None and candidates.numel() < self.num_items:
            blocked = torch.ones(self.num_items + 1, dtype=torch.bool)
            blocked[candidates] = False
            blocked[0] = False  # already -inf
            blocked = blocked.nonzero().squeeze(1)
        return _FullSoftmaxCE.apply(hidden, reps, targets, weights / weights.sum().clamp(min=1e-9), bf16, blocked)

    def fit(
        self,
        dataset: Any,
        *,
        progress: ProgressCallback | None = None,
        seed: int = 0,
        valid: Any = None,
    ) -> FitReport:
        from training.metrics import evaluate

        tune_allocator()
        seed_everything(seed)
        self._set_attributes(dataset)
        self._reset_parameters()
        trained = dataset.item_counts() > 0
        trained[0] = False
        unseen = torch.from_numpy(~trained)
        unseen[0] = False
        self._zero_ids(unseen)
        candidates = torch.from_numpy(np.nonzero(trained)[0]) if unseen.any() else None
        id_dropout = float(self.params.get("id_dropout", 0.0))
        droppable = None
        if id_dropout > 0 and self.params["use_attributes"] and int(self.params["num_attributes"]):
            droppable = (self.item_attrs > 0).any(1)  # an item without attributes keeps its id
        p = self.params
        rng = np.random.default_rng(seed)
        inputs, targets, weights, lengths = self._training_arrays(dataset)
        optimizer = torch.optim.Adam(
            self.parameters(), lr=float(p["lr"]), betas=(0.9, 0.98), weight_decay=float(p["weight_decay"]), fused=True
        )
        batch_size = int(p["batch_size"])
        max_epochs = int(p["max_epochs"])
        use_bf16 = p["precision"] == "bf16" or (p["precision"] == "auto" and bf16_supported())
        n_users = inputs.shape[0]
        if n_users == 0:
            raise ValueError("no user has two or more training events: nothing to learn a sequence from")

        def train_epoch(epoch: int) -> float:
            # Buckets of similar length (within a random window) keep the padded batches narrow.
            perm = rng.permutation(n_users)
            window = batch_size * 32
            batches: list[np.ndarray] = []
            for start in range(0, n_users, window):
                chunk = perm[start : start + window]
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
                batches.extend(chunk[i : i + batch_size] for i in range(0, chunk.size, batch_size))
            rng.shuffle(batches)
            total_loss = 0.0
            for step, rows in enumerate(batches):
                width = int(lengths[rows].max())
                seq = torch.from_numpy(inputs[rows, -width:])
                tgt = torch.from_numpy(targets[rows, -width:])
                wts = torch.from_numpy(weights[rows, -width:])
                id_keep = None
                if droppable is not None:
                    id_keep = (~((torch.rand(self.num_items + 1) < id_dropout) & droppable)).to(torch.float32)
                reps = self.item_representations(id_keep)
                hidden = self._encode(seq, reps)
                real = tgt > 0
                loss = self._loss(hidden[real], tgt[real], wts[real], reps, use_bf16, candidates)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach())
                if progress and step % 20 == 0:
                    frac = (epoch - 1 + step / len(batches)) / max_epochs
                    progress(frac, f"epoch {epoch} step {step}/{len(batches)}", None)
            return total_loss / max(len(batches), 1)

        def validate() -> Validation:
            metrics = evaluate(self, valid, num_items=self.num_items).full  # all of KS: trainer reuses it
            return Validation(
                score=metrics["NDCG@10"],
                metrics=metrics,
                shown={"valid_HR@10": metrics["HR@10"], "valid_NDCG@10": metrics["NDCG@10"]},
            )

        report = run_epochs(
            self,
            train_epoch,
            validate=validate if valid is not None and len(valid) else None,
            max_epochs=max_epochs,
            patience=int(p["patience"]),
            max_seconds=float(p["max_seconds"]),
            progress=progress,
        )
        self._zero_ids(unseen)
        if self.params["new_items"] == "content" and self.params["use_attributes"] and int(p["num_attributes"]):
            figures = self._represent_new_items(torch.from_numpy(trained), valid, seed)
            if figures:  # one row after the epochs: validation NDCG@10 per scale tried
                report.history.append({"new_item_scale": float(self.params["new_item_scale"]), **figures})
        self.eval()
        return report

    # ---- items without training events ------------------------------------------------------
    def _attribute_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item's attribute indices (items + 1, M) and their weights 1/count (0 on padding):
        the rows of the mean attribute-indicator matrix X, kept sparse."""
        attrs = self.item_attrs
        present = (attrs > 0).float()
        return attrs, present / present.sum(1, keepdim=True).clamp(min=1.0)

    def _content_fit(self, items: torch.Tensor, targets: torch.Tensor, iterations: int = 200) -> torch.Tensor:
        """Ridge weights W (attributes + 1, d) with X[items] @ W ~ targets: conjugate gradient on
        (X^T X + l2 I) W = X^T Y, one system per column, X applied sparsely (a catalog's attribute
        count can be large; nothing of size attributes x attributes is built)."""
        attrs, w = self._attribute_rows()
        attrs, w = attrs[items], w[items]
        n_attr = self.attr_emb.num_embeddings
        l2 = float(self.params["content_l2"])

        def xt(z: torch.Tensor) -> torch.Tensor:  # X^T z: (n, d) -> (A, d)
            out = torch.zeros(n_attr, z.shape[1])
            out.index_add_(0, attrs.reshape(-1), (w.unsqueeze(2) * z.unsqueeze(1)).reshape(-1, z.shape[1]))
            return out

        def normal(v: torch.Tensor) -> torch.Tensor:  # (X^T X + l2 I) v
            out = xt((v[attrs] * w.unsqueeze(2)).sum(1)) + l2 * v
            out[0] = v[0]  # padding row: identity, so it stays 0
            return out

        b = xt(targets.float())
        b[0] = 0.0
        x = torch.zeros_like(b)
        r = b.clone()
        direction = r.clone()
        rr = (r * r).sum(0)
        tolerance = 1e-10 * (b * b).sum(0).clamp(min=1e-30)
        for _ in range(iterations):
            if bool((rr <= tolerance).all()):
                break
            q = normal(direction)
            step = rr / (direction * q).sum(0).clamp(min=1e-30)
            x += step * direction
            r -= step * q
            rr_new = (r * r).sum(0)
            direction = r + (rr_new / rr.clamp(min=1e-30)) * direction
            rr = rr_new
        return x

    @torch.no_grad()
    def content_representations(self, fit_on: torch.Tensor) -> torch.Tensor:
        """(items + 1, d): every item's content-tower representation, the ridge fitted on the
        current representations of the items `fit_on` (bool, items + 1) marks."""
        reps = self.item_representations().detach()
        return self._content(self._content_fit(torch.nonzero(fit_on).squeeze(1), reps[fit_on]))

    def _content(self, weights: torch.Tensor) -> torch.Tensor:
        """(items + 1, d): every item's content-tower representation X @ W."""
        attrs, w = self._attribute_rows()
        return (weights[attrs] * w.unsqueeze(2)).sum(1)

    @torch.no_grad()
    def _represent_new_items(self, trained: torch.Tensor, valid: Any, seed: int) -> dict[str, float]:
        """Give every item without training events (`trained` False) the content tower's
        representation times a scale chosen on validation, and return the per-scale figures.

        The scale: a seeded tenth of the trained items pose as new (content tower fitted without
        them, their representations replaced); the scale with the best validation NDCG@10 wins,
        the customers whose target poses as new weighted by `new_item_weight` (1: every customer
        alike, so new items take a place in a top 10 only as far as that does not cost the others
        more than it brings). Stored as an id row (content - attribute mean):
        checkpoints keep their format and the handler's `similar_to` uses it as it is."""
        has_attrs = (self.item_attrs > 0).any(1)
        new = ~trained & has_attrs
        new[0] = False
        learn = trained & has_attrs
        if not bool(new.any()) or not bool(learn.any()):
            return {}
        self.eval()
        reps = self.item_representations().detach()
        figures: dict[str, float] = {}
        scale = float(self.params.get("new_item_scale", 1.0))
        if valid is not None and len(valid):
            scale, figures = self._choose_new_item_scale(reps, learn, new, valid, seed)
        weights = self._content_fit(torch.nonzero(learn).squeeze(1), reps[learn])
        content = self._content(weights)
        attr_part = reps - self.item_emb.weight.detach()
        self.item_emb.weight[new] = scale * content[new] - attr_part[new]
        self.params["new_item_scale"] = scale
        self._content_items = new.clone()
        self._cached_repr = None
        return figures

    @contextlib.contextmanager
    def new_items_as_attributes(self) -> Iterator[int]:
        """Within the block, the items this fit gave the content tower's representation are their
        attribute embeddings alone, as with `new_items="attributes"` (what preceded the tower): the
        cold-items benchmark scores both on the same trained weights. Yields how many items changed."""
        items = self._content_items
        if items is None or not bool(items.any()):
            yield 0
            return
        kept = self.item_emb.weight[items].detach().clone()
        self._zero_ids(items)
        try:
            yield int(items.sum())
        finally:
            with torch.no_grad():
                self.item_emb.weight[items] = kept
            self._cached_repr = None

    def _choose_new_item_scale(
        self, reps: torch.Tensor, learn: torch.Tensor, new: torch.Tensor, valid: Any, seed: int
    ) -> tuple[float, dict[str, float]]:
        from training.metrics import mask_histories, ndcg, target_ranks

        rng = np.random.default_rng(seed + 7919)
        candidates = torch.nonzero(learn).squeeze(1).numpy()
        posing = torch.from_numpy(rng.choice(candidates, size=max(1, candidates.size // 10), replace=False))
        fit_on = learn.clone()
        fit_on[posing] = False
        content = self._content(self._content_fit(torch.nonzero(fit_on).squeeze(1), reps[fit_on]))
        swapped = new.clone()
        swapped[posing] = True
        histories = list(valid.histories)
        targets = torch.as_tensor(valid.targets, dtype=torch.long)
        hidden = self.last_hidden(histories, reps)
        posing_target = swapped[targets].numpy()
        weight = float(self.params["new_item_weight"])
        best_scale, best = 0.0, -1.0
        figures = {"valid_users_new": float(posing_target.sum()), "valid_users": float(posing_target.size)}
        for scale in _NEW_ITEM_SCALES:
            candidate = reps.clone()
            candidate[swapped] = scale * content[swapped]
            ranks = []
            for i in range(0, len(histories), 1024):
                scores = hidden[i : i + 1024] @ candidate.T
                mask_histories(scores, histories[i : i + 1024])
                ranks.append(target_ranks(scores, targets[i : i + 1024]))
            all_ranks = torch.cat(ranks).numpy()
            new_ndcg, old_ndcg = ndcg(all_ranks[posing_target], 10), ndcg(all_ranks[~posing_target], 10)
            n_new, n_old = int(posing_target.sum()), int((~posing_target).sum())
            value = (weight * n_new * new_ndcg + n_old * old_ndcg) / max(weight * n_new + n_old, 1e-9)
            figures[f"scale_{scale:g}_valid_NDCG@10_new"] = new_ndcg
            figures[f"scale_{scale:g}_valid_NDCG@10_established"] = old_ndcg
            if value > best:
                best_scale, best = scale, value
        return best_scale, figures

    def _zero_ids(self, items: torch.Tensor) -> None:
        """Items without training events are their attributes alone (their id rows get no gradient:
        they are neither inputs nor softmax candidates)."""
        if items.any():
            with torch.no_grad():
                self.item_emb.weight[items] = 0.0
            self._cached_repr = None
