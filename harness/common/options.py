"""Every option of the harness, declared once: name, type, default, help and what values are valid.

The pytest plugin (suites/plugin), the CLI (harness/cli/), the session's Settings, the measurement's Workload
and the in-process runner take their defaults from here, and a test holds the native runner's own defaults to
the same numbers. Values arrive as text (a command line) and are parsed by `Option.parse`, which names the
option and the valid values on bad input. Options whose valid values live in a later stage (model families,
recipes, devices) name that set in `choices`; the settings layer checks them, since this module imports nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class OptionError(ValueError):
    """A value an option cannot take; the message names the option."""


def parse_cpus(value: str) -> tuple[int, ...]:
    """'4-7' or '0,2,5-6' → sorted core numbers."""
    cpus: set[int] = set()
    try:
        for part in (p.strip() for p in value.split(",") if p.strip()):
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ValueError(f"takes core numbers and ranges like 4-7 or 0,2, got {value!r}") from None
    if not cpus:
        raise ValueError(f"names no core: {value!r}")
    return tuple(sorted(cpus))


def csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclasses.dataclass(frozen=True)
class Option:
    flag: str  # --name on every command line
    kind: str  # int | float | str | path | ints (comma-separated list) | strs (list) | cpus | switch (on/off)
    default: Any  # parsed; None: unset
    help: str
    minimum: float | None = None  # for numbers and every number of a list
    choices: str | None = None  # models | quants | devices | sizes | runtimes: checked by the settings layer

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        shown = self.format(self.default)
        return f"{self.help} [{shown}]" if shown else self.help

    def format(self, value: Any) -> str:
        """A parsed value as it is typed on a command line ('' for unset)."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "on" if value else "off"
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    def parse(self, text: Any) -> Any:
        """Text from a command line (or an already typed value) → the option's type; OptionError when bad."""
        if text is None or not isinstance(text, str):
            return text
        try:
            value = _PARSERS[self.kind](text)
        except ValueError as e:
            raise OptionError(f"{self.flag} {e}") from None
        numbers = value if isinstance(value, tuple) and self.kind in ("ints", "cpus") else (value,)
        if self.minimum is not None and any(n < self.minimum for n in numbers):
            raise OptionError(f"{self.flag} must be >= {self.minimum:g}, got {text!r}")
        if isinstance(value, tuple) and not value:
            raise OptionError(f"{self.flag}: empty value")
        return value


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in csv(text))
    except ValueError:
        raise ValueError(f"takes comma-separated whole numbers, got {text!r}") from None


def _number(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"takes a {'whole ' if kind is int else ''}number, got {text!r}") from None
    return parse


def _switch(text: str) -> bool:
    if text.strip().lower() not in ("on", "off"):
        raise ValueError(f"takes on or off, got {text!r}")
    return text.strip().lower() == "on"


_PARSERS = {"int": _number(int), "float": _number(float), "str": str, "path": str, "ints": _ints, "strs": csv,
            "cpus": parse_cpus, "switch": _switch}

OPTIONS: dict[str, Option] = {o.dest: o for o in (
    # what to measure
    Option("--device", "strs", ("host",), "device profile(s), adb:SERIAL[@HOST:PORT] or ios:UDID, comma-separated",
           choices="devices"),
    Option("--models", "strs", None, "model families, comma-separated [performance: tinyllama; accuracy: every "
                                     "family]", choices="models"),
    Option("--quant", "strs", ("none", "fp16", "dynamic_int8", "dynamic_int4_block32"),
           "quantization recipes, comma-separated (accuracy: the drift cells, fp32 excepted)", choices="quants"),
    Option("--runtime", "strs", ("litert",),
           "runtimes to measure each cell with, side by side: litert (our native runner on LiteRT), litert-lm "
           "(LiteRT-LM's engine on the same file bundled as .litertlm: host only), llama.cpp (llama-bench on the "
           "same weights as GGUF: F16, Q8_0, Q4_0)", choices="runtimes"),
    Option("--size", "str", None, "tiny (CI-sized) or full (published config) [tiny; full under -m full]",
           choices="sizes"),
    Option("--prefill", "ints", (128, 512), "prefill length(s)", minimum=1),
    Option("--decode", "ints", (128,), "decode length(s)", minimum=1),
    Option("--depth", "ints", (0,), "KV positions filled before the timed decode, list", minimum=0),
    Option("--threads", "ints", (4,), "threads; fewer where the device has fewer cores", minimum=1),
    Option("--cpus", "cpus", None, "pin to these cores (e.g. 4-7 or 0,2) instead of the fastest ones"),
    Option("--reps", "int", 5, "measured repetitions per cell", minimum=1),
    Option("--warmup", "int", 1, "discarded warmup repetitions", minimum=0),
    Option("--bandwidth-probe-mb", "int", 1024,
           "size of the runner's memory-bandwidth probe; 0 disables the roofline share", minimum=0),
    Option("--weight-cache", "switch", True,
           "XNNPACK's weight cache, as apps ship it: on, each cell builds it beside the model on the device (named "
           "by the model's sha256) and records init without it (cold) and with it (warm) and peak memory with it; "
           "off, every load packs the weights"),
    Option("--profile", "switch", False,
           "after each cell's measured repetitions, one more with the runtime's profiler on (untimed, on an engine "
           "of its own): time per op type of the prefill and of one decode step, stored with the cell and shown in "
           "the report"),
    Option("--energy", "switch", True,
           "energy per token where the device has a power meter (a battery's current and voltage, a Jetson's "
           "INA3221, a Pixel's power monitor, RAPL): an idle window before each cell's measured repetitions, then "
           "W and J/token per phase, idle subtracted; elsewhere the cell says why it is unavailable"),
    Option("--energy-idle", "float", 3.0, "seconds of the idle window whose draw energy per token subtracts",
           minimum=0.1),
    Option("--graph-pages", "switch", True,
           "a graph page per converted artifact beside the run report, linked from its cells: each signature's "
           "ops, the authored model's ops, what conversion fused (the first page of a model and lengths exports "
           "it: ~15 s on 2 cores, cached)"),
    Option("--cv-limit", "float", 3.0, "CV (%) above which a figure is flagged unstable", minimum=0),
    Option("--cooldown", "float", 60.0, "most seconds to wait between cells for temperatures to settle",
           minimum=0),
    # where the weights and the runner come from
    Option("--checkpoint-dir", "path", None, "local HF safetensors checkpoint (else seeded random weights)"),
    Option("--seed", "int", 1234, "seed of the random weights"),
    Option("--runner-bin", "path", None, "use this prebuilt runner instead of building one"),
    Option("--runner-app", "path", None, "the iOS runner app (.ipa built with Xcode: device_runners/native/ios/"
                                         "README.md), installed on iOS devices when missing or different [the app "
                                         "they have]"),
    Option("--runner-timeout", "float", 600.0, "seconds before the runner is killed on the device", minimum=1),
    # where results go and how they are judged
    Option("--accuracy-thresholds", "path", None, "quantization drift bounds (TOML) [accuracy.toml]"),
    Option("--results-db", "str", "results/results.db", "results database: file path or SQLAlchemy URL"),
    Option("--report", "path", "results", "folder for the HTML report and the dashboard"),
    Option("--run-label", "str", None, "label stored with the run"),
    Option("--baseline", "str", None, "compare with this run: a baseline name, a run label (its last run) or a "
                                      "run id; significant regressions fail their cell"),
    Option("--gate", "path", None, "release-gate thresholds (TOML) [gate.toml at the repository root]"),
)}


def default(dest: str) -> Any:
    """An option's default; for a list option used where one value is taken, its first value."""
    return OPTIONS[dest].default


def first_default(dest: str) -> Any:
    value = OPTIONS[dest].default
    return value[0] if isinstance(value, tuple) else value
