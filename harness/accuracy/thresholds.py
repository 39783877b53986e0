"""Quantization-drift bounds (accuracy.toml): per recipe, with per-model overrides, read and checked once, and
the one function that holds a drift check's figures to them."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from harness.artifacts.recipe import QUANTS
from harness.common.files import REPO_ROOT

DEFAULT_FILE = REPO_ROOT / "accuracy.toml"
# bound key in accuracy.toml → (figure it limits, "min" or "max")
BOUNDS: dict[str, tuple[str, str]] = {
    "min_top1": ("top1_agreement", "min"),
    "max_mean_kl": ("mean_kl", "max"),
    "max_abs_logit": ("max_abs_logit_diff", "max"),
    "max_size_ratio": ("size_ratio", "max"),
}


class ThresholdsError(ValueError):
    """accuracy.toml is missing, unreadable, or names a recipe or bound that does not exist."""


def _bounds(where: str, bounds: object, partial: bool) -> dict[str, float]:
    """One table of bounds, validated: known names, numbers, and (unless `partial`) every bound present."""
    if not isinstance(bounds, dict):
        raise ThresholdsError(f"{where}: must be a table of bounds ({', '.join(BOUNDS)})")
    unknown = sorted(set(bounds) - set(BOUNDS))
    if unknown:
        raise ThresholdsError(f"{where}: unknown bound(s) {', '.join(unknown)}; valid: {', '.join(BOUNDS)}")
    missing = [key for key in BOUNDS if key not in bounds]
    if missing and not partial:
        raise ThresholdsError(f"{where}: missing bound(s) {', '.join(missing)}; each recipe sets "
                              f"{', '.join(BOUNDS)}")
    bad = [k for k, v in bounds.items() if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad:
        raise ThresholdsError(f"{where}: {', '.join(bad)} must be numbers")
    return {key: float(value) for key, value in bounds.items()}


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdsError(f"accuracy thresholds {path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ThresholdsError(f"accuracy thresholds {path}: {e}") from None


def load_thresholds(path: Path | str | None = None) -> dict[str, dict[str, float]]:
    """recipe → {bound: value} from the [drift.<recipe>] tables of accuracy.toml (or `path`).

    Every table must name a known recipe and hold every bound, so a misspelled name fails here rather than
    leaving a recipe or a bound silently unchecked. Other top-level tables belong to other checks.
    """
    path = Path(path) if path is not None else DEFAULT_FILE
    doc = _read(path)
    drift = doc.get("drift")
    if not isinstance(drift, dict) or not drift:
        raise ThresholdsError(f"accuracy thresholds {path}: no [drift.<recipe>] tables; recipes: {', '.join(QUANTS)}")
    table: dict[str, dict[str, float]] = {}
    for recipe, bounds in drift.items():
        where = f"accuracy thresholds {path}, [drift.{recipe}]"
        if recipe not in QUANTS:
            raise ThresholdsError(f"{where}: unknown recipe {recipe!r}; valid: {', '.join(QUANTS)}")
        table[recipe] = _bounds(where, bounds, partial=False)
    model_overrides(path)  # validated with the rest, so a typo there fails before anything is converted
    return table


def model_overrides(path: Path | str | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """model → recipe → bounds from [drift_model."<model>-<size>".<recipe>] tables: some of the bounds, for a
    model whose figures the per-recipe defaults do not fit (each says why in the file)."""
    path = Path(path) if path is not None else DEFAULT_FILE
    models = _read(path).get("drift_model", {})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model, recipes in models.items():
        if not isinstance(recipes, dict):
            raise ThresholdsError(f"accuracy thresholds {path}, [drift_model.{model}]: must hold recipe tables")
        for recipe, bounds in recipes.items():
            where = f"accuracy thresholds {path}, [drift_model.{model!r}.{recipe}]"
            if recipe not in QUANTS:
                raise ThresholdsError(f"{where}: unknown recipe {recipe!r}; valid: {', '.join(QUANTS)}")
            out.setdefault(model, {})[recipe] = _bounds(where, bounds, partial=True)
    return out


def recipe_thresholds(quant: str, path: Path | str | None = None, model: str | None = None) -> dict[str, float]:
    """The bounds for one recipe (with `model`'s overrides); an error naming the recipes the file has when it
    lacks this one."""
    table = load_thresholds(path)
    if quant not in table:
        where = Path(path) if path is not None else DEFAULT_FILE
        hint = f"unknown recipe; valid: {', '.join(QUANTS)}" if quant not in QUANTS else "add a table for it"
        raise ThresholdsError(f"accuracy thresholds {where}: no [drift.{quant}] ({hint}); "
                              f"the file has: {', '.join(table)}")
    return table[quant] | model_overrides(path).get(model or "", {}).get(quant, {})


def judge(figures: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    """The bounds `figures` break, as readable lines (empty: it passes).

    A missing or non-finite figure counts as broken: NaN compares false with everything and would pass.
    """
    failures = []
    for key, limit in thresholds.items():
        if key not in BOUNDS:
            raise ThresholdsError(f"unknown bound {key!r}; valid: {', '.join(BOUNDS)}")
        name, kind = BOUNDS[key]
        value = figures.get(name)
        if value is None or not math.isfinite(value):
            failures.append(f"{name} is {value!r}, not a number ({key} {limit:g})")
        elif kind == "min" and value < limit:
            failures.append(f"{name} {value:.6g} < {key} {limit:g}")
        elif kind == "max" and value > limit:
            failures.append(f"{name} {value:.6g} > {key} {limit:g}")
    return failures
