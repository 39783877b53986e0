"""The release gate's configuration: which metrics it knows, and the limits and statistics of gate.toml.

A thresholds file is a list of [[rule]] tables whose shell-wildcard patterns (device, model, quant, runtime) pick
the cells they apply to (a row stored before runtimes existed is `litert`'s). Matching rules merge in file order,
a later rule's value replacing an earlier one's, so a general rule comes first and specific ones refine it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import tomllib
from pathlib import Path

from harness.common.files import REPO_ROOT
from harness.measure import stats
from harness.measure.metrics import FIELDS


@dataclasses.dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    higher_is_better: bool
    sampled: bool  # one value per repetition in data["runner"]["samples"]; else one value per run
    compared: bool = True  # judged against the baseline (cold init is too noisy for that)


# Every figure of the cell result with a direction (metadata `better`) is a metric: min_/max_ limits apply to
# it, and the `compared` ones are tested against the baseline.
METRICS = {f.name: Metric(f.metadata["label"], f.metadata["unit"], f.metadata["better"] == "higher",
                          f.metadata["sampled"], f.metadata["compared"])
           for f in FIELDS if f.metadata.get("better")}
_PATTERNS = ("device", "model", "quant", "runtime")
_STATS_KEYS = {"alpha": stats.ALPHA, "min_effect_pct": stats.MIN_EFFECT_PCT,
               # one value per run (peak memory) or a single repetition: no test, the effect size alone decides
               "single_value_effect_pct": 10.0}
_BOUND_KEYS = {f"{side}_{name}" for name in METRICS for side in ("min", "max")} | {"max_accuracy_drift"}
# The repository's thresholds, used when no other file is named.
DEFAULT_FILE = REPO_ROOT / "gate.toml"


class GateConfigError(ValueError):
    """The thresholds file is unreadable or names an unknown setting."""


@dataclasses.dataclass(frozen=True)
class Rule:
    patterns: dict[str, str]
    settings: dict[str, float]

    def matches(self, rec: dict) -> bool:
        return all(fnmatch.fnmatchcase(_field(rec, k), self.patterns.get(k, "*")) for k in _PATTERNS)


def _field(rec: dict, key: str) -> str:
    value = rec.get(key)
    if key == "runtime" and (value is None or value != value):  # NULL (NaN in a frame): rows before runtimes
        return "litert"
    return str(value if value is not None else "")


@dataclasses.dataclass(frozen=True)
class GateConfig:
    rules: tuple[Rule, ...] = ()
    source: str = "built-in defaults"

    @property
    def digest(self) -> str:
        """Names these rules in stored verdicts: the same rules give the same digest, whatever the file's name."""
        text = json.dumps([[r.patterns, r.settings] for r in self.rules], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def settings_for(self, rec: dict) -> dict[str, float]:
        """Every setting that applies to this cell: the statistics' defaults, then matching rules in order."""
        merged = dict(_STATS_KEYS)
        for rule in self.rules:
            if rule.matches(rec):
                merged |= rule.settings
        return merged


def load_config(path: Path | str) -> GateConfig:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise GateConfigError(f"gate thresholds {path}: {e}") from None
    unknown_tables = set(doc) - {"rule"}
    raw_rules = doc.get("rule", [])
    if unknown_tables or not isinstance(raw_rules, list):
        found = f", not {', '.join(sorted(unknown_tables))}" if unknown_tables else ""
        raise GateConfigError(f"gate thresholds {path}: holds [[rule]] tables only{found}")
    rules = []
    for i, raw in enumerate(raw_rules, 1):
        patterns = {k: raw[k] for k in _PATTERNS if k in raw}
        settings = {k: v for k, v in raw.items() if k not in _PATTERNS}
        bad = [k for k in settings if k not in _BOUND_KEYS | set(_STATS_KEYS)]
        bad += [k for k, v in settings.items() if not isinstance(v, int | float) or isinstance(v, bool)]
        bad += [k for k, v in patterns.items() if not isinstance(v, str)]
        if bad:
            raise GateConfigError(f"gate thresholds {path}, rule {i}: bad setting(s) {sorted(set(bad))}; valid: "
                                  f"{', '.join(_PATTERNS)} (patterns), {', '.join(sorted(_BOUND_KEYS))}, "
                                  f"{', '.join(_STATS_KEYS)} (numbers)")
        rules.append(Rule(patterns, {k: float(v) for k, v in settings.items()}))
    return GateConfig(tuple(rules), str(path))


def config_from(path: Path | str | None) -> GateConfig:
    """The thresholds file given, else the repository's gate.toml, else the built-in statistics and no limits."""
    if path is None and not DEFAULT_FILE.is_file():
        return GateConfig()
    return load_config(path or DEFAULT_FILE)
