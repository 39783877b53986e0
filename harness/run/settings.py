"""What a session measures: its settings (defaults from the option registry, harness/common/options.py) and
the cells they expand to: one speed cell per model × quant × device × prefill × decode × threads × depth, and
per model the accuracy checks."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from harness.artifacts.recipe import kv_len_for
from harness.common.options import default
from harness.gate.config import GateConfig
from harness.measure.bench import Workload


@dataclasses.dataclass(frozen=True)
class Cell:
    model: str
    size: str
    quant: str
    device: str
    prefill: int
    decode: int
    threads: int
    depth: int = 0
    runtime: str = "litert"  # harness/measure/runtimes.py

    @property
    def id(self) -> str:
        depth = f"-depth{self.depth}" if self.depth else ""
        lengths = f"p{self.prefill}-d{self.decode}{depth}-t{self.threads}"
        runtime = "" if self.runtime == "litert" else f"-{self.runtime}"
        return f"{self.model}-{self.size}-{self.quant}-{self.device}-{lengths}{runtime}"

    @property
    def kv_len(self) -> int:
        return kv_len_for(max(self.prefill, self.depth), self.decode)


@dataclasses.dataclass(frozen=True)
class AccuracyCell:
    model: str
    size: str
    check: str  # reauthoring | conversion | drift (harness/accuracy/registry.py) | agreement
    quant: str | None = None  # drift and agreement
    device: str | None = None  # agreement: the device whose tokens are held to the host's

    @property
    def id(self) -> str:
        return "-".join(filter(None, (self.model, self.size, self.check, self.quant, self.device)))

    @property
    def stored_check(self) -> str:
        """The check's name in the accuracy table: one agreement row per device."""
        return f"{self.check}:{self.device}" if self.device else self.check


@dataclasses.dataclass(frozen=True)
class Settings:
    devices: tuple[str, ...] = default("device")
    models: tuple[str, ...] = ("tinyllama",)  # the performance cells' default; --models sets both
    accuracy_models: tuple[str, ...] = ("tinyllama",)  # the plugin's default: every family
    accuracy_thresholds: Path | None = None  # drift bounds; None: accuracy.toml
    quants: tuple[str, ...] = default("quant")
    runtimes: tuple[str, ...] = default("runtime")
    size: str = "tiny"
    prefill: tuple[int, ...] = default("prefill")
    decode: tuple[int, ...] = default("decode")
    threads: tuple[int, ...] = default("threads")
    depth: tuple[int, ...] = default("depth")
    cpus: tuple[int, ...] | None = None  # pin here instead of the device's fastest cores
    warmup: int = default("warmup")
    reps: int = default("reps")
    bandwidth_probe_mb: int = default("bandwidth_probe_mb")
    weight_cache: bool = default("weight_cache")  # XNNPACK's weight cache beside the model (Workload)
    profile: bool = default("profile")  # one more, profiled repetition per cell (Workload)
    energy: bool = default("energy")  # energy per token where the device has a meter (Workload)
    energy_idle_s: float = default("energy_idle")
    graph_pages: bool = default("graph_pages")  # a graph page per artifact beside the run report (suites/plugin)
    cv_limit_pct: float = default("cv_limit")
    cooldown_s: float = default("cooldown")  # most seconds to wait between cells for temperatures to settle
    checkpoint_dir: Path | None = None
    seed: int = default("seed")
    runner_bin: Path | None = None
    runner_app: Path | None = None  # the iOS runner app (.ipa); None: the one the device has installed
    runner_timeout: float = default("runner_timeout")
    results_db: str = default("results_db")
    report_dir: Path = Path(default("report"))
    label: str | None = None
    baseline_run: int | None = None  # resolved before this session's run exists: a label means its last run
    gate: GateConfig = GateConfig()

    def cells(self) -> list[Cell]:
        """Runtimes innermost: the runtimes of one model · quant · device · workload run one after the other,
        interleaved with the other cells rather than runtime by runtime, so a drift of the machine over the run
        (another tenant, the temperature) moves them alike."""
        return [Cell(m, self.size, q, d, p, n, t, k, r) for m, q, d, p, n, t, k, r in itertools.product(
            self.models, self.quants, self.devices, self.prefill, self.decode, self.threads, self.depth,
            self.runtimes)]

    def accuracy_cells(self) -> list[AccuracyCell]:
        """Per model: vs transformers, vs its .tflite, then drift of each quantized recipe vs fp32; per device
        other than the host, each recipe's greedy tokens there against the host runner's on the same file."""
        return [AccuracyCell(m, self.size, check, quant, device) for m in self.accuracy_models
                for check, quant, device in [
                    ("reauthoring", None, None), ("conversion", None, None),
                    *(("drift", q, None) for q in self.quants if q != "none"),
                    *(("agreement", q, d) for d in self.devices if d != "host" for q in self.quants)]]

    def workload(self, cell: Cell) -> Workload:
        # fp16 artifacts are not asked to compute in fp16 (Workload.fp16_arithmetic): XNNPACK rejects FORCE_FP16
        # on these exports' attention composite (harness/measure/bench.py says more).
        return Workload(cell.prefill, cell.decode, cell.threads, self.warmup, self.reps, cell.depth, self.cpus,
                        self.bandwidth_probe_mb, weight_cache=self.weight_cache, profile=self.profile,
                        energy=self.energy, energy_idle_s=self.energy_idle_s)
