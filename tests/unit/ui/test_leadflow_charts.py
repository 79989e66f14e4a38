"""Inline SVG charts: well-formed XML, exact values, escaped labels, no external references."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from leadflow.views import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def test_bar_chart_draws_one_bar_per_item_scaled_to_the_largest():
    root = _parse(charts.bar_chart([("a", 10), ("b", 5), ("c", 0)], title="t", height=228))
    bars = root.findall(f"{SVG}rect[@class='bar']")
    assert [b.get("data-value") for b in bars] == ["10", "5", "0"]
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] == 2 * heights[1] and heights[2] == 0


def test_chart_labels_are_escaped():
    svg = str(charts.bar_chart([("<script>alert(1)</script>", 3)], title="x & y"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    _parse(svg)


def test_grouped_chart_has_one_bar_per_group_and_series_and_a_legend():
    root = _parse(charts.funnel_chart({
        "stages": ["lead", "mql"],
        "runs": [{"run_id": "r1", "counts": {"lead": 4, "mql": 2}},
                 {"run_id": "r2", "dry_run": True, "counts": {"lead": 5}}],
    }))
    bars = root.findall(f"{SVG}rect[@class='bar']")
    assert [(b.get("data-group"), b.get("data-series"), b.get("data-value")) for b in bars] == [
        ("lead", "r1", "4"), ("lead", "r2 (dry run)", "5"), ("mql", "r1", "2"), ("mql", "r2 (dry run)", "0")]
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "r2 (dry run)" in texts


def test_heatmap_has_a_cell_per_grade_with_its_count():
    grades = {"fit": ["A", "B"], "engagement": ["1", "2"], "cells": {"A1": 7, "B2": 1}, "total": 8}
    root = _parse(charts.grade_chart(grades))
    cells = {c.get("data-key"): c.get("data-value") for c in root.findall(f"{SVG}rect[@class='cell']")}
    assert cells == {"A1": "7", "A2": "0", "B1": "0", "B2": "1"}


def test_empty_data_gives_a_placeholder_not_an_error():
    svg = str(charts.bar_chart([], title="nothing"))
    assert "no data yet" in svg
    assert "no data yet" in str(charts.funnel_chart({"stages": [], "runs": []}))


def test_charts_reference_no_external_resources():
    svg = str(charts.histogram_chart([{"lo": 0, "hi": 10, "count": 3}]))
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in svg and "<script" not in svg
