"""The condition language of business rules: a small JSON tree over item fields.

Pure Python (no Django): the rules engine evaluates it on the hot path and the one validator in
`recadmin.rules.validation` checks it for the model, the services and the API alike.

Grammar
-------
    condition := {"all": [condition, ...]}        every sub-condition matches (an empty list is refused)
               | {"any": [condition, ...]}        at least one matches
               | {"not": condition}               the sub-condition does not match
               | {"field": F, "op": OP, "value": V}

    F (field)        OP                      V
    category         in_subtree              slug or list of slugs: the category or any descendant
                     eq / in                 slug / list of slugs: exactly that category (no subtree)
    brand            eq, ne / in, not_in     string / list of strings (compared case-insensitively)
    price            lt, lte, gt, gte, eq    number >= 0
                     between                 [min, max], inclusive, min <= max
    in_stock         eq                      true / false
    active           eq                      true / false
    item             eq / in                 shop id / list of shop ids
    attributes.NAME  eq, ne / in, not_in     string, number or boolean / list of them
                     exists                  true / false

An item without a price never matches a price leaf (an unknown price is not "below 10"). For an
attribute holding a list (tags), `eq` means "contains" and `in` means "shares one value".

Example: skincare (the whole subtree) from 10 to 50, not brand "acme":
    {"all": [{"field": "category", "op": "in_subtree", "value": "skincare"},
             {"field": "price", "op": "between", "value": [10, 50]},
             {"not": {"field": "brand", "op": "eq", "value": "acme"}}]}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

MAX_DEPTH = 8
MAX_LIST = 1000
ATTRIBUTE_PREFIX = "attributes."

# field -> {op: value kind}; the value kinds are checked by `_check_value`.
FIELD_OPS: dict[str, dict[str, str]] = {
    "category": {"in_subtree": "slugs", "eq": "slug", "in": "slug_list"},
    "brand": {"eq": "string", "ne": "string", "in": "string_list", "not_in": "string_list"},
    "price": {
        "lt": "number",
        "lte": "number",
        "gt": "number",
        "gte": "number",
        "eq": "number",
        "between": "range",
    },
    "in_stock": {"eq": "bool"},
    "active": {"eq": "bool"},
    "item": {"eq": "string", "in": "string_list"},
}
ATTRIBUTE_OPS: dict[str, str] = {
    "eq": "scalar",
    "ne": "scalar",
    "in": "scalar_list",
    "not_in": "scalar_list",
    "exists": "bool",
}

FIELDS_HELP = ", ".join([*FIELD_OPS, "attributes.<name>"])


class ConditionError(ValueError):
    """A condition that cannot match. `path` locates the offending part ("all[1].value")."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ItemLike(Protocol):
    """What a condition reads from an item (the engine's Candidate satisfies it)."""

    @property
    def item_id(self) -> str: ...
    @property
    def category(self) -> str | None: ...
    @property
    def category_path(self) -> tuple[str, ...]: ...
    @property
    def brand(self) -> str: ...
    @property
    def price(self) -> float | None: ...
    @property
    def in_stock(self) -> bool: ...
    @property
    def active(self) -> bool: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


def _join(path: str, part: str) -> str:
    if not path:
        return part
    return f"{path}{part}" if part.startswith("[") else f"{path}.{part}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # excludes NaN


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _check_list(value: Any, path: str, element: Callable[[Any], bool], what: str) -> None:
    if not isinstance(value, list):
        raise ConditionError(path, f"expected a list of {what}, got {type(value).__name__}")
    if not value:
        raise ConditionError(path, "the list is empty, so the condition can never match")
    if len(value) > MAX_LIST:
        raise ConditionError(path, f"at most {MAX_LIST} values")
    for index, element_value in enumerate(value):
        if not element(element_value):
            raise ConditionError(_join(path, f"[{index}]"), f"expected {what}, got {element_value!r}")


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_value(kind: str, value: Any, path: str) -> None:
    if kind in ("string", "slug"):
        if not _non_empty_string(value):
            raise ConditionError(path, f"expected a non-empty string, got {value!r}")
    elif kind in ("string_list", "slug_list"):
        _check_list(value, path, _non_empty_string, "non-empty strings")
    elif kind == "slugs":
        if isinstance(value, list):
            _check_list(value, path, _non_empty_string, "non-empty strings")
        elif not _non_empty_string(value):
            raise ConditionError(path, f"expected a category slug or a list of slugs, got {value!r}")
    elif kind == "number":
        if not _is_number(value):
            raise ConditionError(path, f"expected a number, got {value!r}")
        if value < 0:
            raise ConditionError(path, f"prices are never negative, so {value} can never match")
    elif kind == "range":
        if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) for v in value):
            raise ConditionError(path, f"expected [min, max] as two numbers, got {value!r}")
        low, high = value
        if low < 0 or high < 0:
            raise ConditionError(path, "prices are never negative")
        if low > high:
            raise ConditionError(path, f"price min {low} is above max {high}, so nothing can match")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConditionError(path, f"expected true or false, got {value!r}")
    elif kind == "scalar":
        if not _is_scalar(value):
            raise ConditionError(path, f"expected a string, number or boolean, got {value!r}")
    elif kind == "scalar_list":
        _check_list(value, path, _is_scalar, "strings, numbers or booleans")
    else:  # pragma: no cover - FIELD_OPS and this function are kept in step
        raise AssertionError(kind)


def validate_condition(condition: Any, path: str = "", depth: int = 0) -> None:
    """Raise ConditionError for anything that is malformed or can never match."""
    if depth > MAX_DEPTH:
        raise ConditionError(path, f"nested more than {MAX_DEPTH} levels deep")
    if not isinstance(condition, dict):
        raise ConditionError(path, f"expected an object, got {type(condition).__name__}")
    combinators = [key for key in ("all", "any", "not") if key in condition]
    if combinators:
        if len(condition) != 1:
            extra = sorted(set(condition) - {combinators[0]})
            raise ConditionError(path, f"'{combinators[0]}' must be the only key, found also {extra}")
        key = combinators[0]
        inner = condition[key]
        if key == "not":
            validate_condition(inner, _join(path, "not"), depth + 1)
            return
        if not isinstance(inner, list) or not inner:
            raise ConditionError(_join(path, key), "expected a non-empty list of conditions")
        for index, sub in enumerate(inner):
            validate_condition(sub, _join(path, f"{key}[{index}]"), depth + 1)
        return

    unknown_keys = sorted(set(condition) - {"field", "op", "value"})
    if unknown_keys:
        raise ConditionError(
            path, f"unknown key(s) {unknown_keys}: a leaf is {{'field', 'op', 'value'}}, or use 'all'/'any'/'not'"
        )
    for key in ("field", "op"):
        if key not in condition:
            raise ConditionError(_join(path, key), "this key is required")
    field = condition["field"]
    op = condition["op"]
    field_path = _join(path, "field")
    if not isinstance(field, str):
        raise ConditionError(field_path, f"expected a field name, got {field!r}")
    if field.startswith(ATTRIBUTE_PREFIX):
        if not field[len(ATTRIBUTE_PREFIX) :].strip():
            raise ConditionError(field_path, "name the attribute: 'attributes.<name>'")
        ops = ATTRIBUTE_OPS
    elif field in FIELD_OPS:
        ops = FIELD_OPS[field]
    else:
        raise ConditionError(field_path, f"unknown field {field!r}; expected one of {FIELDS_HELP}")
    if op not in ops:
        raise ConditionError(
            _join(path, "op"), f"operator {op!r} does not apply to {field!r}; expected one of {', '.join(ops)}"
        )
    if "value" not in condition:
        raise ConditionError(_join(path, "value"), "this key is required")
    _check_value(ops[op], condition["value"], _join(path, "value"))


def category_slugs(condition: Mapping[str, Any]) -> set[str]:
    """Every category slug a (validated) condition names, so the caller can check they exist."""
    found: set[str] = set()
    for leaf in iter_leaves(condition):
        if leaf.get("field") == "category":
            value = leaf.get("value")
            found.update(str(v) for v in (value if isinstance(value, list) else [value]))
    return found


def iter_leaves(condition: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    if "all" in condition or "any" in condition:
        for sub in condition.get("all") or condition.get("any") or []:
            yield from iter_leaves(sub)
    elif "not" in condition:
        yield from iter_leaves(condition["not"])
    else:
        yield condition


# ---------------------------------------------------------------------------------------------
# Evaluation: a validated condition is compiled once into a closure, then applied per candidate.

Predicate = Callable[[ItemLike], bool]


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _attribute_values(item: ItemLike, name: str) -> list[Any]:
    raw = item.attributes.get(name, _MISSING)
    if raw is _MISSING:
        return []
    if isinstance(raw, list):
        return [_fold(v) for v in raw]
    return [_fold(raw)]


_MISSING = object()


def _leaf(field: str, op: str, value: Any) -> Predicate:
    if field == "category":
        if op == "in_subtree":
            wanted = frozenset(value if isinstance(value, list) else [value])
            return lambda item: not wanted.isdisjoint(item.category_path)
        if op == "eq":
            return lambda item: item.category == value
        wanted_exact = frozenset(value)
        return lambda item: item.category in wanted_exact
    if field == "brand":
        if op in ("eq", "ne"):
            folded = value.casefold()
            if op == "eq":
                return lambda item: item.brand.casefold() == folded
            return lambda item: item.brand.casefold() != folded
        folded_set = frozenset(v.casefold() for v in value)
        if op == "in":
            return lambda item: item.brand.casefold() in folded_set
        return lambda item: item.brand.casefold() not in folded_set
    if field == "price":
        if op == "between":
            low, high = float(value[0]), float(value[1])
            return lambda item: item.price is not None and low <= item.price <= high
        bound = float(value)
        compare: Callable[[float], bool] = {
            "lt": lambda p: p < bound,
            "lte": lambda p: p <= bound,
            "gt": lambda p: p > bound,
            "gte": lambda p: p >= bound,
            "eq": lambda p: abs(p - bound) < 1e-9,
        }[op]
        return lambda item: item.price is not None and compare(item.price)
    if field == "in_stock":
        return lambda item: bool(item.in_stock) is value
    if field == "active":
        return lambda item: bool(item.active) is value
    if field == "item":
        if op == "eq":
            return lambda item: item.item_id == value
        ids = frozenset(value)
        return lambda item: item.item_id in ids
    # attributes.<name>
    name = field[len(ATTRIBUTE_PREFIX) :]
    if op == "exists":
        return lambda item: (name in item.attributes) is value
    if op in ("eq", "ne"):
        target = _fold(value)

        def contains(item: ItemLike) -> bool:
            return target in _attribute_values(item, name)

        return contains if op == "eq" else (lambda item: not contains(item))
    targets = [_fold(v) for v in value]

    def shares(item: ItemLike) -> bool:
        return any(v in targets for v in _attribute_values(item, name))

    return shares if op == "in" else (lambda item: not shares(item))


def compile_condition(condition: Mapping[str, Any] | None) -> Predicate:
    """A predicate for a validated condition. None or {} matches every item."""
    if not condition:
        return lambda item: True
    if "all" in condition:
        parts = [compile_condition(sub) for sub in condition["all"]]
        return lambda item: all(part(item) for part in parts)
    if "any" in condition:
        parts = [compile_condition(sub) for sub in condition["any"]]
        return lambda item: any(part(item) for part in parts)
    if "not" in condition:
        inner = compile_condition(condition["not"])
        return lambda item: not inner(item)
    return _leaf(str(condition["field"]), str(condition["op"]), condition.get("value"))


# ---------------------------------------------------------------------------------------------
# Batch evaluation: the same predicate over a list of items, one list comprehension per leaf.
# The engine asks each filter / boost / bury rule about every candidate of a request (~150): a
# comprehension costs a fraction of one closure call per item. Each leaf reads exactly what its
# `_leaf` twin reads, and "all" / "any" ask a sub-condition only about the items the previous ones
# left undecided, so every item sees the same evaluations (and errors) as with the predicate.

BatchPredicate = Callable[[Sequence[ItemLike]], list[bool]]


def _batch_leaf(field: str, op: str, value: Any) -> BatchPredicate | None:
    """A comprehension for the common leaves; None means "call the predicate per item"."""
    if field == "category":
        if op == "in_subtree":
            disjoint = frozenset(value if isinstance(value, list) else [value]).isdisjoint
            return lambda items: [not disjoint(item.category_path) for item in items]
        if op == "eq":
            return lambda items: [item.category == value for item in items]
        wanted_exact = frozenset(value)
        return lambda items: [item.category in wanted_exact for item in items]
    if field == "brand":
        if op in ("eq", "ne"):
            folded = value.casefold()
            if op == "eq":
                return lambda items: [item.brand.casefold() == folded for item in items]
            return lambda items: [item.brand.casefold() != folded for item in items]
        folded_set = frozenset(v.casefold() for v in value)
        if op == "in":
            return lambda items: [item.brand.casefold() in folded_set for item in items]
        return lambda items: [item.brand.casefold() not in folded_set for item in items]
    if field == "price":
        if op == "between":
            low, high = float(value[0]), float(value[1])
            return lambda items: [(price := item.price) is not None and low <= price <= high for item in items]
        bound = float(value)
        if op == "lt":
            return lambda items: [(price := item.price) is not None and price < bound for item in items]
        if op == "lte":
            return lambda items: [(price := item.price) is not None and price <= bound for item in items]
        if op == "gt":
            return lambda items: [(price := item.price) is not None and price > bound for item in items]
        if op == "gte":
            return lambda items: [(price := item.price) is not None and price >= bound for item in items]
        if op == "eq":
            return lambda items: [(price := item.price) is not None and abs(price - bound) < 1e-9 for item in items]
        return None
    if field in ("in_stock", "active"):
        if field == "in_stock":
            return lambda items: [bool(item.in_stock) is value for item in items]
        return lambda items: [bool(item.active) is value for item in items]
    if field == "item":
        if op == "eq":
            return lambda items: [item.item_id == value for item in items]
        ids = frozenset(value)
        return lambda items: [item.item_id in ids for item in items]
    return None


def _batch_all(parts: list[BatchPredicate], wanted: bool) -> BatchPredicate:
    # wanted=True: "all" (an item stays True while every part holds); False: "any".
    def evaluate(items: Sequence[ItemLike]) -> list[bool]:
        result = [wanted] * len(items)
        undecided = list(range(len(items)))
        for part in parts:
            if not undecided:
                break
            answers = part([items[index] for index in undecided])
            still: list[int] = []
            for index, answer in zip(undecided, answers, strict=True):
                if bool(answer) is wanted:
                    still.append(index)
                else:
                    result[index] = not wanted
            undecided = still
        return result

    return evaluate


def compile_condition_batch(condition: Mapping[str, Any] | None) -> BatchPredicate:
    """`compile_condition(condition)` applied to each of a list of items, as a list of bools."""
    if not condition:
        return lambda items: [True] * len(items)
    if "all" in condition or "any" in condition:
        key = "all" if "all" in condition else "any"
        return _batch_all([compile_condition_batch(sub) for sub in condition[key]], key == "all")
    if "not" in condition:
        inner = compile_condition_batch(condition["not"])
        return lambda items: [not answer for answer in inner(items)]
    field, op, value = str(condition["field"]), str(condition["op"]), condition.get("value")
    batch = _batch_leaf(field, op, value)
    if batch is not None:
        return batch
    predicate = _leaf(field, op, value)
    return lambda items: [predicate(item) for item in items]
