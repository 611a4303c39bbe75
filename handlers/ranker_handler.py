"""TorchServe handler of the ranking stage (training.ranker: ESMM, or the logistic baseline).

Runs inside a TorchServe worker from an unpacked .mar, like recommender_handler.py: the archive
root holds this file, the `training` package and the ranker checkpoint (config.json, model.pt,
features.json, items.json). It imports only torch, TorchServe and that code.

A request (JSON) scores the candidates that retrieval produced for one customer:
  {"customer": {"activity": 14, "recency_days": 2.5, "category_affinity": {"shoes": 0.6},
                "brand_affinity": {"acme": 0.3}, "price_sensitivity": 0.4},
   "scene": "home",
   "context": {"hour": 20, "weekday": 4, "device": "mobile"},       (or {"timestamp": unix seconds})
   "candidates": [{"item": "sku-1", "retrieval_score": 0.91, "source": "sasrec"},
                  {"item": "sku-new", "retrieval_score": 0.5, "source": "rules",
                   "attributes": {"category": "shoes", "brand": "acme", "price": 59.0, "stock": 3}}]}
and is answered, in the candidates' order, with [{"item": "sku-1", "pctr": 0.083, "pctcvr": 0.011}, ...].
The candidates may come as columns instead (what the rank stage sends: less JSON to decode):
   "candidates": {"item": ["sku-1", "sku-2"], "retrieval_score": [0.91, 0.5], "source": ["sasrec", "rules"],
                  "price": [59.0, null], "stock": [3, null]}     (price, stock: optional, null = the table's)
Candidates are looked up in the item table the model was trained with; "attributes" (any of
category, brand, price, popularity, age_days, stock) override or replace it (fresh stock, new
items). Every candidate is scored at the same position (the spec's serving_position), so the
scores carry no position bias. All requests of a TorchServe batch go through one forward pass.
Bad input is a 400 through PredictionException (a bad request inside a good batch gets its own).

Settings from the archive's model-config.yaml, section `handler`: max_candidates, torch_threads.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
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

MAX_CANDIDATES = 2000
_ITEM_FIELDS = ("category", "brand", "price", "popularity", "age_days", "stock")
_COLUMN_OVERRIDES = ("price", "stock")
_NUMBER_OR_NONE = {float, int, type(None)}


class RankerHandler(BaseHandler):
    def initialize(self, context: Any) -> None:
        from training.ranker.checkpoint import load_ranker_checkpoint

        properties = context.system_properties
        model_dir = properties.get("model_dir") or "."
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler") or {}
        self.max_candidates = int(settings.get("max_candidates", MAX_CANDIDATES))
        threads = settings.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        loaded = load_ranker_checkpoint(model_dir)
        self.model = loaded.model
        self.use_table(loaded.spec, loaded.items)
        self.context = context
        self.initialized = True
        logger.info(
            "ranker handler: %s model, %d items in its table, serving position %d, max_candidates=%d",
            self.model.kind,
            len(self.item_ids),
            self.spec.serving_position,
            self.max_candidates,
        )

    def use_table(self, spec: Any, items: dict[str, Any]) -> None:
        """The feature spec and the item table (ItemFeatures by id) the requests are featurised with."""
        from training.ranker.features import ItemFeatures

        self.spec = spec
        # Row 0: an item the table does not know and the request does not describe.
        self.item_ids = list(items)
        self.item_row = {item_id: i + 1 for i, item_id in enumerate(self.item_ids)}
        self.item_features = [ItemFeatures(), *items.values()]
        self.item_cats, self.item_nums = spec.item_rows(self.item_features)
        # Per table row, its category's median log price (for a request's price override).
        self.item_category_log_price = spec.category_log_prices([it.category for it in self.item_features])
        self.position = torch.tensor([spec.serving_position], dtype=torch.long)

    # ---- requests ---------------------------------------------------------------------------

    def preprocess(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Parse and validate each request of the batch. A bad request in a batch with good ones
        gets its own 400; a batch of only bad requests (e.g. a single one) raises."""
        try:
            return parse_batch(data, self._parse)
        except ValueError as exc:
            raise PredictionException(str(exc), 400) from exc

    def _parse(self, row: Any) -> dict[str, Any]:
        from training.ranker.features import ContextFeatures, CustomerFeatures

        body = request_object(row, needs='"candidates"')
        customer = body.get("customer") or {}
        if not isinstance(customer, dict):
            raise ValueError('"customer" must be an object of customer features.')
        scene = body.get("scene") or ""
        if not isinstance(scene, str):
            raise ValueError('"scene" must be a string.')
        ctx = body.get("context") or {}
        if not isinstance(ctx, dict):
            raise ValueError('"context" must be an object (hour, weekday, device or timestamp).')
        device = ctx.get("device") or ""
        if not isinstance(device, str):
            raise ValueError('"context.device" must be a string.')
        if ctx.get("timestamp") is not None:
            ts = ctx["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(float(ts)):
                raise ValueError('"context.timestamp" must be unix seconds.')
            context = ContextFeatures.at(float(ts), scene=scene, device=device)
        else:
            hour, weekday = ctx.get("hour", 0), ctx.get("weekday", 0)
            if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
                raise ValueError('"context.hour" must be an integer 0..23.')
            if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
                raise ValueError('"context.weekday" must be an integer 0..6 (Monday = 0).')
            context = ContextFeatures(scene=scene, hour=hour, weekday=weekday, device=device)
        candidates = body.get("candidates")
        overrides: dict[str, list[Any]] = {}
        if isinstance(candidates, dict):
            ids, scores, sources, overrides = self._candidates_columns(candidates)
            described: list[Any] = []
        else:
            if not isinstance(candidates, list) or not candidates:
                raise ValueError(
                    '"candidates" must be a non-empty list of {"item", "retrieval_score", "source"} '
                    '(or an object of columns "item", "retrieval_score", "source", "price", "stock").'
                )
            if len(candidates) > self.max_candidates:
                raise ValueError(f'"candidates" may hold at most {self.max_candidates} items.')
            parsed = self._candidates_fast(candidates)
            if parsed is None:  # something is off: the careful pass names the field (or copes)
                parsed = self._candidates_checked(candidates)
            ids, scores, sources, described = parsed
        row_of = self.item_row.get
        source_index = self.spec.index["source"]
        try:
            customer_features = CustomerFeatures.from_dict(customer)
        except ValueError as exc:
            raise ValueError(f"customer: {exc}") from exc
        return {
            "ids": ids,
            "rows": [row_of(item, 0) for item in ids],
            "scores": scores,
            "source_ids": _codes(source_index, sources),
            "described": described,
            "overrides": overrides,
            "customer": customer_features,
            "context": context,
        }

    @staticmethod
    def _candidates_fast(candidates: list[Any]) -> tuple[list[str], list[Any], list[str], list[Any]] | None:
        """Well-formed candidates without attributes (the usual request) in a few list passes
        (type checks on the set of types, not per element: this runs for every candidate of every
        request); None for anything else."""
        try:
            ids = [c["item"] for c in candidates]
            scores = [c.get("retrieval_score", 0.0) for c in candidates]
            sources = [c.get("source") or "" for c in candidates]
            if any("attributes" in c for c in candidates):
                return None
        except (TypeError, KeyError, AttributeError):
            return None
        checked = _ids_as_strings(ids)
        if checked is None or set(map(type, sources)) != {str}:
            return None
        if not set(map(type, scores)) <= {float, int} or not math.isfinite(math.fsum(scores)):
            return None
        return checked, scores, sources, []

    def _candidates_columns(
        self, columns: dict[str, Any]
    ) -> tuple[list[str], list[Any], list[str], dict[str, list[Any]]]:
        """The columnar form (what the rank stage sends: a third less JSON to decode than one
        object per candidate, and no per-candidate object to check):
        {"item": [...], "retrieval_score": [...], "source": [...], "price": [...], "stock": [...]};
        price and stock (numbers or null per candidate) override the item table like "attributes"."""
        unknown = set(columns) - {"item", "retrieval_score", "source", *_COLUMN_OVERRIDES}
        if unknown:
            raise ValueError(f'"candidates.{sorted(unknown)[0]}" is unknown; allowed: item, retrieval_score, source, '
                             f"{', '.join(_COLUMN_OVERRIDES)}.")  # fmt: skip
        ids = columns.get("item")
        if not isinstance(ids, list) or not ids:
            raise ValueError('"candidates.item" must be a non-empty list of item ids.')
        n = len(ids)
        if n > self.max_candidates:
            raise ValueError(f'"candidates" may hold at most {self.max_candidates} items.')
        checked = _ids_as_strings(ids)
        if checked is None:
            raise ValueError('"candidates.item" must hold item ids (strings).')
        ids = checked
        scores = columns.get("retrieval_score")
        if scores is None:
            scores = [0.0] * n
        if not isinstance(scores, list) or len(scores) != n or not set(map(type, scores)) <= {float, int}:
            raise ValueError('"candidates.retrieval_score" must be a list of numbers, one per item.')
        if not math.isfinite(math.fsum(scores)):
            raise ValueError('"candidates.retrieval_score" must hold finite numbers.')
        sources = columns.get("source")
        if sources is None:
            sources = [""] * n
        if not isinstance(sources, list) or len(sources) != n or not set(map(type, sources)) <= {str}:
            raise ValueError('"candidates.source" must be a list of strings, one per item.')
        overrides: dict[str, list[Any]] = {}
        for name in _COLUMN_OVERRIDES:
            values = columns.get(name)
            if values is None:
                continue
            if not isinstance(values, list) or len(values) != n or not set(map(type, values)) <= _NUMBER_OR_NONE:
                raise ValueError(f'"candidates.{name}" must be a list of numbers (or null), one per item.')
            if not math.isfinite(math.fsum(v for v in values if v is not None)):
                raise ValueError(f'"candidates.{name}" must hold finite numbers.')
            overrides[name] = values
        return ids, scores, sources, overrides

    def _candidates_checked(self, candidates: list[Any]) -> tuple[list[str], list[Any], list[str], list[Any]]:
        ids: list[str] = []
        scores: list[Any] = []
        sources: list[str] = []
        described: list[tuple[int, Any]] = []
        row_of = self.item_row.get
        for n, cand in enumerate(candidates):
            if not isinstance(cand, dict):
                raise ValueError(f"candidates[{n}] must be an object.")
            item = cand.get("item")
            if not is_id(item):
                raise ValueError(f"candidates[{n}].item must be an item id.")
            score = cand.get("retrieval_score", 0.0)
            if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                raise ValueError(f"candidates[{n}].retrieval_score must be a finite number.")
            source = cand.get("source") or ""
            if not isinstance(source, str):
                raise ValueError(f"candidates[{n}].source must be a string.")
            attributes = cand.get("attributes")
            if attributes is not None:
                if not isinstance(attributes, dict):
                    raise ValueError(f"candidates[{n}].attributes must be an object.")
                base = self.item_features[row_of(str(item), 0)]
                described.append((n, replace(base, **_item_fields(n, attributes))))
            ids.append(str(item))
            scores.append(float(score))
            sources.append(source)
        return ids, scores, sources, described

    # ---- scoring ----------------------------------------------------------------------------

    def _features(self, r: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = _tensor(r["rows"], np.int64)
        item_cats, item_nums = self.item_cats[rows], self.item_nums[rows]
        if r["described"]:
            # Described candidates: the table's attributes (if any) with the request's on top.
            cats, nums = self.spec.item_rows([features for _, features in r["described"]])
            at = torch.tensor([n for n, _ in r["described"]], dtype=torch.long)
            item_cats[at], item_nums[at] = cats, nums
        if r["overrides"]:
            self._override(rows, item_cats, item_nums, r["overrides"])
        cust_nums, cat_aff, brand_aff = self.spec.customer_rows([r["customer"]])
        n = rows.shape[0]
        return self.spec.assemble(
            item_cats=item_cats,
            item_nums=item_nums,
            customer_nums=cust_nums,
            category_affinity=cat_aff,
            brand_affinity=brand_aff,
            context_ids=self.spec.context_ids([r["context"]]),
            source_ids=_tensor(r["source_ids"], np.int64),
            positions=self.position.expand(n),
            retrieval_scores=_tensor(r["scores"], np.float32),
        )

    def _override(
        self, rows: torch.Tensor, item_cats: torch.Tensor, item_nums: torch.Tensor, overrides: dict[str, list[Any]]
    ) -> None:
        """The columns' price and stock over the table's rows, as spec.item_rows computes them
        (spec.price_columns: log price, price band, price relative to the item's category median;
        units and in stock)."""
        price = overrides.get("price")
        if price is not None:
            values = torch.from_numpy(np.array(price, dtype=np.float64))  # null -> NaN: the table's value
            given = ~torch.isnan(values)
            every = bool(given.all())
            median = self.item_category_log_price[rows if every else rows[given]]
            as_float, band, relative = self.spec.price_columns(values if every else values[given], median)
            if every:
                item_nums[:, 0], item_nums[:, 5], item_cats[:, 2] = as_float, relative, band
            else:
                item_nums[given, 0], item_nums[given, 5], item_cats[given, 2] = as_float, relative, band
        stock = overrides.get("stock")
        if stock is not None:
            values = torch.from_numpy(np.array(stock, dtype=np.float64))
            given = ~torch.isnan(values)
            every = bool(given.all())
            units = values if every else values[given]
            log_units, in_stock = torch.log1p(units.clamp(min=0.0)).float(), (units > 0).float()
            if every:
                item_nums[:, 3], item_nums[:, 4] = log_units, in_stock
            else:
                item_nums[given, 3], item_nums[given, 4] = log_units, in_stock

    def inference(self, requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[Any]:
        """Every good request's candidates in one forward pass, split back per request."""
        from training.ranker.features import FeatureBatch

        results: list[Any] = [None] * len(requests)
        parts: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        for i, r in enumerate(requests):
            if "error" in r:
                results[i] = r
                continue
            cats, nums = self._features(r)
            parts.append((i, cats, nums))
        if parts:
            if len(parts) == 1:
                batch = FeatureBatch(categorical=parts[0][1], numeric=parts[0][2])
            else:
                batch = FeatureBatch(
                    categorical=torch.cat([p[1] for p in parts]), numeric=torch.cat([p[2] for p in parts])
                )
            with torch.inference_mode():
                p_ctr, p_ctcvr = self.model.predict(batch)
            # Six decimals are plenty for ordering and for reasons ("predicted clicks 0.083").
            ctr = (torch.round(p_ctr * 1e6) / 1e6).tolist()
            ctcvr = (torch.round(p_ctcvr * 1e6) / 1e6).tolist()
            start = 0
            for i, cats, _ in parts:
                end = start + cats.shape[0]
                results[i] = (requests[i]["ids"], ctr[start:end], ctcvr[start:end])
                start = end
        return results

    def postprocess(self, outputs: list[Any]) -> list[Any]:
        answers: list[Any] = []
        for i, out in enumerate(outputs):
            if isinstance(out, dict) and "error" in out:
                answers.append(error_answer(self.context, i, out["error"]))
                continue
            ids, ctr, ctcvr = out
            rows = [{"item": item, "pctr": a, "pctcvr": b} for item, a, b in zip(ids, ctr, ctcvr, strict=True)]
            answers.append(json_answer(self.context, i, rows))
        return answers


def _item_fields(n: int, attributes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if key not in _ITEM_FIELDS:
            raise ValueError(f"candidates[{n}].attributes.{key} is unknown; allowed: {', '.join(_ITEM_FIELDS)}.")
        if key in ("category", "brand"):
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise ValueError(f"candidates[{n}].attributes.{key} must be a string.")
            out[key] = str(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"candidates[{n}].attributes.{key} must be a finite number.")
            out[key] = float(value)
    return out


def _tensor(values: list[Any], dtype: Any) -> torch.Tensor:
    """A list of Python numbers as a tensor: through numpy, a third of torch.tensor's time."""
    return torch.from_numpy(np.fromiter(values, dtype, len(values)))


def _codes(index: dict[str, int], values: list[str]) -> list[int]:
    """Ids of values from few distinct ones (a request's sources): one lookup per distinct value."""
    distinct = set(values)
    if len(distinct) == 1:
        return [index.get(values[0], 0)] * len(values)
    codes = {value: index.get(value, 0) for value in distinct}
    return [codes[value] for value in values]


def _ids_as_strings(ids: list[Any]) -> list[str] | None:
    """Item ids as strings (an integer id counts as its decimal text), None when one is neither a
    string nor an integer, or is empty. Checked on the set of types, not per element: this runs for
    every candidate of every request."""
    id_types = set(map(type, ids))
    if id_types != {str}:
        if not id_types <= {str, int}:
            return None
        ids = [str(i) for i in ids]
    return None if "" in ids else ids
