"""The rule builder's side of the condition language: rows of (field, operator, value) joined by
"all" or "any", turned into the JSON condition the API and the engine use, and back.

The builder writes exactly `recadmin.rules.conditions`' format: one row is a leaf, several rows are
{"all": [...]} or {"any": [...]}. A condition the rows cannot express (nested groups, "not") is left
to the JSON box. Values are typed from the text of a row by the operator's value kind, so "10-50"
becomes [10, 50] for `between` and "acme, globex" a list for `in`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from recadmin.rules.conditions import (
    ATTRIBUTE_OPS,
    ATTRIBUTE_PREFIX,
    FIELD_OPS,
    ConditionError,
    compile_condition_batch,
    validate_condition,
)

MATCH_ALL = "all"
MATCH_ANY = "any"

FIELD_LABELS: dict[str, str] = {
    "category": "Category",
    "brand": "Brand",
    "price": "Price",
    "in_stock": "In stock",
    "active": "Active",
    "item": "Item (shop id)",
    ATTRIBUTE_PREFIX: "Attribute...",
}
OP_LABELS: dict[str, str] = {
    "in_subtree": "is in (with subcategories)",
    "eq": "is",
    "ne": "is not",
    "in": "is one of",
    "not_in": "is none of",
    "lt": "below",
    "lte": "at most",
    "gt": "above",
    "gte": "at least",
    "between": "between",
    "exists": "exists",
}
VALUE_HINTS: dict[str, str] = {
    "slugs": "category slug(s), comma-separated",
    "slug": "category slug",
    "slug_list": "category slugs, comma-separated",
    "string": "text",
    "string_list": "values, comma-separated",
    "number": "number",
    "range": "min-max, e.g. 10-50",
    "bool": "yes / no",
    "scalar": "text, number or yes/no",
    "scalar_list": "values, comma-separated",
}
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def builder_schema() -> dict[str, Any]:
    """What the builder's script needs: every field with its operators, their labels and value kinds."""
    fields = [
        {
            "name": name,
            "label": FIELD_LABELS.get(name, name),
            "ops": [{"name": op, "label": OP_LABELS.get(op, op), "kind": kind} for op, kind in ops.items()],
        }
        for name, ops in [*FIELD_OPS.items(), (ATTRIBUTE_PREFIX, ATTRIBUTE_OPS)]
    ]
    return {"fields": fields, "hints": VALUE_HINTS}


def _ops_for(field: str) -> dict[str, str]:
    if field.startswith(ATTRIBUTE_PREFIX):
        return ATTRIBUTE_OPS
    return FIELD_OPS.get(field, {})


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _number(text: str, where: str) -> int | float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConditionError(where, f"expected a number, got {text!r}") from None
    return int(value) if value.is_integer() else value


def _bool(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConditionError(where, f"expected yes or no, got {text!r}")


def _scalar(text: str) -> str | int | float | bool:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return _number(text, "")
    except ConditionError:
        return text.strip()


def parse_value(kind: str, text: str, where: str = "") -> Any:
    """The typed value of a row's text for an operator's value kind."""
    text = (text or "").strip()
    if kind in ("string", "slug"):
        return text
    if kind in ("string_list", "slug_list"):
        return _split(text)
    if kind == "slugs":
        parts = _split(text)
        return parts[0] if len(parts) == 1 else parts
    if kind == "number":
        return _number(text, where)
    if kind == "range":
        cleaned = text.replace(",", " ").replace("..", " ").replace(" - ", " ")
        parts = cleaned.split() if " " in cleaned.strip() else cleaned.split("-")
        parts = [p for p in parts if p.strip()]
        if len(parts) != 2:
            raise ConditionError(where, f"expected min-max (e.g. 10-50), got {text!r}")
        return [_number(parts[0], where), _number(parts[1], where)]
    if kind == "bool":
        return _bool(text, where)
    if kind == "scalar":
        return _scalar(text)
    if kind == "scalar_list":
        return [_scalar(part) for part in _split(text)]
    raise ConditionError(where, f"unknown value kind {kind!r}")


def format_value(value: Any, kind: str = "") -> str:
    """A leaf's value as the builder shows it in its text box (the inverse of `parse_value`)."""
    if kind == "range" and isinstance(value, list) and len(value) == 2:
        return f"{format_value(value[0])}-{format_value(value[1])}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Row:
    field: str
    op: str
    value: str


def condition_from_rows(match: str, rows: Iterable[Row]) -> dict[str, Any]:
    """The JSON condition of the builder's rows; {} without rows. Raises ConditionError naming the
    row ("row 2: ...") for a value that does not parse or a condition that can never match."""
    leaves: list[dict[str, Any]] = []
    for index, row in enumerate(rows, start=1):
        where = f"row {index}"
        field = (row.field or "").strip()
        if not field and not (row.value or "").strip():
            continue  # an untouched empty row
        ops = _ops_for(field)
        if not ops or field == ATTRIBUTE_PREFIX:
            raise ConditionError(where, "choose a field" if not field else "name the attribute")
        if row.op not in ops:
            raise ConditionError(where, f"operator {row.op!r} does not apply to {field!r}")
        leaf = {"field": field, "op": row.op, "value": parse_value(ops[row.op], row.value, where)}
        try:
            validate_condition(leaf)
        except ConditionError as exc:
            raise ConditionError(where, exc.message) from None
        leaves.append(leaf)
    if not leaves:
        return {}
    if len(leaves) == 1:
        return leaves[0]
    return {MATCH_ANY if match == MATCH_ANY else MATCH_ALL: leaves}


def rows_from_condition(condition: Mapping[str, Any] | None) -> tuple[str, list[Row]] | None:
    """(match, rows) for a condition the builder can show; None for one it cannot (nested, "not")."""
    if not condition:
        return MATCH_ALL, []
    match = MATCH_ALL
    leaves: Sequence[Any]
    if "all" in condition or "any" in condition:
        match = MATCH_ALL if "all" in condition else MATCH_ANY
        leaves = condition[match]
    else:
        leaves = [condition]
    rows: list[Row] = []
    for leaf in leaves:
        if not isinstance(leaf, Mapping) or "field" not in leaf:
            return None
        field, op = str(leaf["field"]), str(leaf.get("op", ""))
        kind = _ops_for(field).get(op, "")
        rows.append(Row(field=field, op=op, value=format_value(leaf.get("value"), kind)))
    return match, rows


# --- how many catalog items a condition matches ---------------------------------------------------


@dataclass(frozen=True)
class CatalogItem:
    """An item as the condition language reads it (satisfies conditions.ItemLike)."""

    item_id: str
    category: str | None
    category_path: tuple[str, ...]
    brand: str
    price: float | None
    in_stock: bool
    active: bool
    attributes: Mapping[str, Any]


def condition_match_count(condition: Mapping[str, Any], *, sample_size: int = 5) -> dict[str, Any]:
    """{"count", "total", "sample"}: active catalog items the (validated) condition matches, with the
    shop ids of the first few. Evaluated with the engine's own predicate, so the count means what the
    rule will do."""
    from recadmin.catalog.models import Item

    predicate = compile_condition_batch(condition)
    rows = (
        Item.objects.filter(is_active=True)
        .order_by("shop_id")
        .values_list(
            "shop_id", "category__slug", "category__path", "brand", "price", "in_stock", "is_active", "attributes"
        )
    )
    count = total = 0
    sample: list[str] = []
    batch: list[CatalogItem] = []

    def flush() -> None:
        nonlocal count
        for item, matched in zip(batch, predicate(batch), strict=True):
            if matched:
                count += 1
                if len(sample) < sample_size:
                    sample.append(item.item_id)
        batch.clear()

    for shop_id, slug, path, brand, price, in_stock, active, attributes in rows.iterator(chunk_size=5000):
        total += 1
        batch.append(
            CatalogItem(
                item_id=shop_id,
                category=slug,
                category_path=tuple(p for p in (path or "").strip("/").split("/") if p),
                brand=brand or "",
                price=float(price) if isinstance(price, Decimal | int | float) else None,
                in_stock=bool(in_stock),
                active=bool(active),
                attributes=attributes if isinstance(attributes, dict) else {},
            )
        )
        if len(batch) >= 5000:
            flush()
    flush()
    return {"count": count, "total": total, "sample": sample}
