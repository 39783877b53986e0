"""Conversion memory at full size, held to a baseline (`pytest tests/test_conversion_memory.py -m full`).

Full TinyLlama-1.1B converts from an empty cache (float export, then int8 quantized from it); the test fails when
a child's peak RSS, or its anonymous part (what the kernel cannot drop), grows more than 10 % over
tests/baselines/conversion_memory.json, which holds figures measured on the machine the README's table names.
Memory, unlike time, does not change with the CPU: the check holds across machines of this kind.
After a change that is meant to cost memory, write its figures (the artifacts' meta.json) into the baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.artifacts.cache import ensure_artifact
from harness.artifacts.recipe import Recipe
from models.registry import get_spec

pytestmark = pytest.mark.full
BASELINE = Path(__file__).parent / "baselines" / "conversion_memory.json"
GROWTH = 1.10


def _phase_peak(meta: dict, figure: str) -> float:
    return max(phase[figure] for phase in meta["convert_phases"])


def test_full_tinyllama_conversion_peak_has_not_grown():
    spec = get_spec("tinyllama", "full")
    measured = {}
    for quant in ("none", "dynamic_int8"):  # the float root, then a recipe quantized from its file
        meta = ensure_artifact(spec, Recipe(quant, 128, 256)).meta
        assert meta["convert_phases"], "the conversion child wrote no phase figures"
        measured[quant] = {"peak_rss_mb": meta["convert_peak_rss_mb"],
                           "peak_anon_mb": _phase_peak(meta, "peak_anon_mb")}
    baseline = json.loads(BASELINE.read_text())["tinyllama-full"]
    grown = [f"{quant} {figure}: {value:.0f} MiB, baseline {baseline[quant][figure]:.0f} MiB"
             for quant, figures in measured.items() for figure, value in figures.items()
             if value > GROWTH * baseline[quant][figure]]
    assert not grown, "conversion memory grew more than 10 %: " + "; ".join(grown)
