"""What a simulation run did, counted on the client side."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimulationReport:
    seed: int = 0
    visits: int = 0
    requests: int = 0
    lists: Counter[str] = field(default_factory=Counter)  # per scene
    impressions: int = 0  # items in the lists received
    examined: int = 0  # items the visitors looked at (position bias)
    clicks: int = 0
    clicks_by_position: Counter[int] = field(default_factory=Counter)
    impressions_by_position: Counter[int] = field(default_factory=Counter)
    add_to_carts: int = 0
    purchases: int = 0
    units: int = 0
    revenue: float = 0.0
    events_sent: int = 0
    events_stored: int = 0
    events_duplicates: int = 0
    events_rejected: int = 0
    rejected_fields: Counter[str] = field(default_factory=Counter)
    price_sent: bool = True
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_by: str = ""
    # Per experiment variant, when the recommendations answers name one (client-side counts, a
    # cross-check of the experiment's report): lists, impressions, clicks, purchases, revenue.
    variants: dict[str, Counter[str]] = field(default_factory=dict)
    variant_revenue: dict[str, float] = field(default_factory=dict)
    variant_customers: dict[str, set[str]] = field(default_factory=dict)

    def variant_count(self, variant: str, *, customer: str | None = None, revenue: float = 0.0, **counts: int) -> None:
        self.variants.setdefault(variant, Counter()).update(counts)
        self.variant_revenue[variant] = self.variant_revenue.get(variant, 0.0) + revenue
        if customer is not None:
            self.variant_customers.setdefault(variant, set()).add(customer)

    def variant_rows(self) -> dict[str, dict[str, Any]]:
        rows = {}
        for name, counts in sorted(self.variants.items()):
            impressions = counts["impressions"]
            rows[name] = {
                "customers": len(self.variant_customers.get(name, ())),
                "lists": counts["lists"],
                "impressions": impressions,
                "clicks": counts["clicks"],
                "ctr": round(counts["clicks"] / impressions, 4) if impressions else None,
                "purchases": counts["purchases"],
                "revenue": round(self.variant_revenue.get(name, 0.0), 2),
            }
        return rows

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def non_2xx(self) -> dict[str, int]:
        return {code: n for code, n in sorted(self.statuses.items()) if not code.startswith("2")}

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "visits": self.visits,
            "requests": self.requests,
            "requests_per_second": round(self.requests / self.seconds, 2) if self.seconds else None,
            "seconds": round(self.seconds, 2),
            "lists": dict(sorted(self.lists.items())),
            "impressions": self.impressions,
            "examined": self.examined,
            "clicks": self.clicks,
            "ctr": round(self.ctr, 4) if self.ctr is not None else None,
            "ctr_by_position": {
                p: round(self.clicks_by_position[p] / n, 4) for p, n in sorted(self.impressions_by_position.items())
            },
            "add_to_carts": self.add_to_carts,
            "purchases": self.purchases,
            "units": self.units,
            "revenue": round(self.revenue, 2),
            "events": {
                "sent": self.events_sent,
                "stored": self.events_stored,
                "duplicates": self.events_duplicates,
                "rejected": self.events_rejected,
                "rejected_fields": dict(self.rejected_fields),
                "price_sent": self.price_sent,
            },
            "statuses": dict(sorted(self.statuses.items())),
            "non_2xx": self.non_2xx,
            "stopped_by": self.stopped_by,
            "variants": self.variant_rows(),
        }

    def summary(self) -> str:
        lists = ", ".join(f"{scene} {n}" for scene, n in sorted(self.lists.items())) or "none"
        ctr = f"{self.ctr:.2%}" if self.ctr is not None else "n/a"
        rate = self.requests / self.seconds if self.seconds else 0.0
        positions = " ".join(
            f"{p}:{self.clicks_by_position[p] / n:.1%}" for p, n in sorted(self.impressions_by_position.items())[:10]
        )
        non_2xx = ", ".join(f"{code} x{n}" for code, n in self.non_2xx.items()) or "none"
        price = "sent" if self.price_sent else "not accepted by the server, left out"
        variants = "".join(
            f"\n  variant {name:<10} {row['customers']} customers, {row['lists']} lists, {row['clicks']} clicks "
            f"(CTR {row['ctr'] if row['ctr'] is not None else 'n/a'}), {row['purchases']} purchases, "
            f"revenue {row['revenue']:.2f}"
            for name, row in self.variant_rows().items()
        )
        return (
            f"simulated {self.visits} visits (seed {self.seed}) in {self.seconds:.1f} s, stopped by {self.stopped_by}\n"
            f"  requests     {self.requests} ({rate:.1f}/s)\n"
            f"  lists        {sum(self.lists.values())} ({lists})\n"
            f"  impressions  {self.impressions} (examined {self.examined})\n"
            f"  clicks       {self.clicks}  CTR {ctr}\n"
            f"  CTR by pos.  {positions or 'n/a'}\n"
            f"  add to cart  {self.add_to_carts}\n"
            f"  purchases    {self.purchases} ({self.units} units)  revenue {self.revenue:.2f}\n"
            f"  events       {self.events_sent} sent, {self.events_stored} stored, "
            f"{self.events_duplicates} duplicates, {self.events_rejected} rejected; price {price}\n"
            f"  non-2xx      {non_2xx}"
            f"{variants}"
        )
