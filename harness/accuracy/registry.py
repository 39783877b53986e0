"""The accuracy checks by name, for the CLI (`python -m harness verify`) and the accuracy suite.

Each check returns a JSON-able dict with its figures, `failures` (the bounds it broke, as sentences) and
`passed`.
"""

from __future__ import annotations

from pathlib import Path

from models.spec import ModelSpec

CHECKS = ("reauthoring", "conversion", "drift")


def drift_quants() -> tuple[str, ...]:
    from harness.artifacts.recipe import QUANTS

    return tuple(q for q in QUANTS if q != "none")


def run_check(spec: ModelSpec, check: str, quant: str | None = None, thresholds: Path | None = None) -> dict:
    from harness.accuracy import conversion, reauthoring

    if check == "reauthoring":
        return reauthoring.check_reauthoring(spec)
    if check == "conversion":
        return conversion.check_conversion(spec)
    if check == "drift":
        from harness.accuracy import drift

        figures, failures = drift.check_drift(spec, quant, thresholds)
        return {"check": "drift", **figures, "failures": failures, "passed": not failures}
    raise ValueError(f"unknown check {check!r}; valid: {', '.join(CHECKS)}")


def run_checks(spec: ModelSpec, checks: list[str], quants: list[str] | None = None,
               thresholds: Path | None = None) -> list[dict]:
    results = []
    for check in checks:
        for quant in (quants or drift_quants()) if check == "drift" else [None]:
            results.append(run_check(spec, check, quant, thresholds))
    return results
