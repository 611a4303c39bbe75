"""The SVG chart primitives: valid SVG, escaped text, gaps and empty data."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from recadmin.core.charts import _nice_ticks, bar_chart, format_number, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_a_line_chart_draws_one_line_per_series_with_a_legend() -> None:
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(6)]
    svg = str(
        line_chart(
            {"home": [(h, h.hour / 10) for h in hours], "cart": [(h, 0.2) for h in hours]}, title="CTR", percent=True
        )
    )
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}polyline")) == 2
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "home" in texts and "cart" in texts and "CTR" in texts
    assert any(t and t.endswith("%") for t in texts)


def test_text_is_escaped() -> None:
    svg = str(line_chart({"<script>alert(1)</script>": [(1, 1.0), (2, 2.0)]}, title='a "b" & <c>'))
    ET.fromstring(svg)  # still well-formed
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_a_gap_splits_the_line_and_no_data_says_so() -> None:
    svg = str(line_chart({"s": [(1, 1.0), (2, None), (3, 2.0), (4, 3.0)]}))
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}polyline")) == 1 and len(root.findall(f"{SVG}circle")) == 1
    assert "No data yet" in str(line_chart({}))
    assert "No data yet" in str(bar_chart([], {}))


def test_a_bar_chart_draws_bars_and_intervals() -> None:
    svg = str(bar_chart(["control", "v4"], {"CTR": [0.1, 0.12]}, errors={"CTR": [(0.09, 0.11), None]}, percent=True))
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}rect")) == 3  # two bars and the legend's key
    assert len(root.findall(f"{SVG}line")) > 3


def test_ticks_and_numbers_are_round() -> None:
    assert _nice_ticks(0, 97) == [0, 25, 50, 75, 100]
    assert _nice_ticks(0, 0.13) == [0, 0.05, 0.1, 0.15]
    assert format_number(12_345) == "12k" and format_number(1_500_000) == "1.5M" and format_number(0.25) == "0.25"
