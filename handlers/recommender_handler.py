"""TorchServe handler for every recadmin recommender (pop, itemknn, cf, sasrec).

Runs inside a TorchServe worker from an unpacked .mar: the archive root (on the worker's
sys.path) holds this file, the `training` package and the checkpoint files (config.json,
model.pt, items.json). It imports only torch, TorchServe and that model code.

Requests (JSON), each answered with a list of {"item": <shop item id>, "score": <float>}:
  {"history": [shop item ids, oldest first], "k": 500, "exclude": [shop item ids]}
      top k for that history; the history and the excluded ids are never among them. Unknown ids
      are skipped; an empty (or all-unknown) history gets what the model gives a new customer.
  {"similar_to": "<shop item id>", "k": 50, "exclude": [...]}
      the items nearest by cosine of the model's item embeddings (empty for an unknown id).
A request TorchServe batches with others is scored in the same forward pass. Bad input (bad JSON,
no usable field, k not a positive integer up to max_k, ...) is a 400 through PredictionException.

Settings come from the archive's model-config.yaml, section `handler`: default_k, max_k,
torch_threads.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

# In the .mar the helper sits beside this file at the archive root (recadmin.modelops.archive), a
# top-level module as mypy sees it too; imported from the repository (tests) it is handlers'.
if TYPE_CHECKING or not __package__:
    from request_body import error_answer, is_id, json_answer, parse_batch, request_object
else:
    from handlers.request_body import error_answer, is_id, json_answer, parse_batch, request_object

logger = logging.getLogger(__name__)

DEFAULT_K = 100
MAX_K = 1000
# Only the most recent part of a very long history can matter to any of our models; the cap
# keeps one pathological request from slowing the whole batch.
MAX_HISTORY = 2000


class RecommenderHandler(BaseHandler):
    def initialize(self, context: Any) -> None:
        import training
        from training.checkpoint import load_checkpoint  # the archive's copy, see module docstring

        properties = context.system_properties
        model_dir = properties.get("model_dir") or "."
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        settings = yaml_config.get("handler") or {}
        self.default_k = int(settings.get("default_k", DEFAULT_K))
        self.max_k = int(settings.get("max_k", MAX_K))
        threads = settings.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))

        loaded = load_checkpoint(model_dir)
        model = loaded.model
        model.eval()
        self.model = model
        self.num_items = int(model.num_items)
        # Plain list and dict: the per-request id <-> index work stays in C-speed lookups.
        self.item_ids: list[str | None] = [None, *loaded.item_index.ids]
        self.index_of: dict[str, int] = {item_id: i for i, item_id in enumerate(self.item_ids) if item_id is not None}
        with torch.inference_mode():
            emb = model.item_embeddings().detach().float()
            # What a new customer (empty or all-unknown history) gets never changes: computed once
            # here, it costs nothing per request and does not depend on what else is in a batch.
            self.new_customer_scores = model.score([[]])[0].detach().float().clone()
        # Unit rows: one matrix product then gives cosine similarities.
        self.unit_embeddings = torch.nn.functional.normalize(emb, dim=1)
        self.context = context
        self.initialized = True
        logger.info(
            "recommender handler: %s model, %d items, default_k=%d max_k=%d, training code from %s",
            model.kind,
            self.num_items,
            self.default_k,
            self.max_k,
            training.__file__,
        )

    # ---- requests ---------------------------------------------------------------------------

    def preprocess(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Parse and validate each request of the batch. A bad request in a batch with good ones
        gets its own 400; a batch of only bad requests (e.g. a single one) raises."""
        try:
            return parse_batch(data, self._parse)
        except ValueError as exc:
            raise PredictionException(str(exc), 400) from exc

    def _parse(self, row: Any) -> dict[str, Any]:
        body = request_object(row, needs='"history" or "similar_to"')
        k = body.get("k", self.default_k)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError('"k" must be a positive integer.')
        if k > self.max_k:
            raise ValueError(f'"k" must be at most {self.max_k}.')
        exclude = body.get("exclude", [])
        if exclude is None:
            exclude = []
        if not isinstance(exclude, list) or not all(is_id(x) for x in exclude):
            raise ValueError('"exclude" must be a list of item ids.')
        excluded = self._indices(exclude)
        has_history = "history" in body and body["history"] is not None
        has_similar = "similar_to" in body and body["similar_to"] is not None
        if has_history and has_similar:
            raise ValueError('Give either "history" or "similar_to", not both.')
        if has_similar:
            item = body["similar_to"]
            if not is_id(item):
                raise ValueError('"similar_to" must be an item id.')
            return {"kind": "similar", "k": k, "item": self.index_of.get(str(item)), "exclude": excluded}
        if has_history:
            history = body["history"]
            if not isinstance(history, list) or not all(is_id(x) for x in history):
                raise ValueError('"history" must be a list of item ids, oldest first.')
            indices = self._indices(history)
            return {"kind": "history", "k": k, "history": indices[-MAX_HISTORY:], "seen": indices, "exclude": excluded}
        raise ValueError('The request needs "history" (a list of item ids) or "similar_to" (an item id).')

    def _indices(self, ids: list[Any]) -> list[int]:
        out = []
        for item_id in ids:
            index = self.index_of.get(str(item_id))
            if index is not None:  # unknown ids are skipped, as the contract says
                out.append(index)
        return out

    # ---- scoring ----------------------------------------------------------------------------

    def inference(self, requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[Any]:
        """All history requests of the batch in one model.score() call (empty histories use the
        precomputed new-customer scores), all similar_to requests in one matrix product; then
        masking and top-k per request."""
        results: list[Any] = [None] * len(requests)
        history_rows = [i for i, r in enumerate(requests) if r.get("kind") == "history" and r["history"]]
        new_customer_rows = [i for i, r in enumerate(requests) if r.get("kind") == "history" and not r["history"]]
        similar_rows = [i for i, r in enumerate(requests) if r.get("kind") == "similar" and r["item"] is not None]
        with torch.inference_mode():
            if history_rows:
                scores = self.model.score([requests[i]["history"] for i in history_rows]).float()
                for row, i in enumerate(history_rows):
                    r = requests[i]
                    results[i] = self._top_k(scores[row], r["k"], r["seen"] + r["exclude"])
            for i in new_customer_rows:
                r = requests[i]
                results[i] = self._top_k(self.new_customer_scores, r["k"], r["exclude"])
            if similar_rows:
                anchors = self.unit_embeddings[[requests[i]["item"] for i in similar_rows]]
                sims = anchors @ self.unit_embeddings.T
                for row, i in enumerate(similar_rows):
                    r = requests[i]
                    results[i] = self._top_k(sims[row], r["k"], [r["item"], *r["exclude"]])
        for i, r in enumerate(requests):
            if "error" in r:
                results[i] = r
            elif results[i] is None:  # similar_to an item the model has never seen
                results[i] = ([], [])
        return results

    def _top_k(self, scores: torch.Tensor, k: int, masked: list[int]) -> tuple[list[int], list[float]]:
        scores = scores.clone()
        scores[0] = -math.inf  # padding
        if masked:
            scores[torch.as_tensor(masked, dtype=torch.long)] = -math.inf
        values, indices = torch.topk(scores, min(k, scores.numel()))
        keep = torch.isfinite(values)  # masked or unscorable items never make the list
        return indices[keep].tolist(), values[keep].tolist()

    def postprocess(self, outputs: list[Any]) -> list[Any]:
        answers: list[Any] = []
        for i, out in enumerate(outputs):
            if isinstance(out, dict) and "error" in out:
                answers.append(error_answer(self.context, i, out["error"]))
                continue
            indices, values = out
            ids = self.item_ids
            pairs = zip(indices, values, strict=True)
            rows = [{"item": ids[j], "score": round(float(v), 6)} for j, v in pairs]
            answers.append(json_answer(self.context, i, rows))
        return answers
