"""A benchmark session: the cells of a run, each converted (cached), measured on its device and stored.

The pytest plugin drives it; nothing here depends on pytest.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device_runners.device import Device, open_device
from harness.artifacts import Recipe, ensure_artifact, kv_len_for
from harness.device_lock import device_lock
from harness.gate import CellVerdict, GateConfig, evaluate_cell
from harness.measure import Workload, bench, cooldown
from harness.provenance import HARNESS_VERSION, git_commit
from harness.store import Store
from models.registry import get_spec

if TYPE_CHECKING:
    from device_runners.build import RunnerBuild


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

    @property
    def id(self) -> str:
        depth = f"-depth{self.depth}" if self.depth else ""
        lengths = f"p{self.prefill}-d{self.decode}{depth}-t{self.threads}"
        return f"{self.model}-{self.size}-{self.quant}-{self.device}-{lengths}"

    @property
    def kv_len(self) -> int:
        return kv_len_for(max(self.prefill, self.depth), self.decode)


@dataclasses.dataclass(frozen=True)
class AccuracyCell:
    model: str
    size: str
    check: str  # reauthoring | conversion | drift (harness/verify.py)
    quant: str | None = None  # drift only

    @property
    def id(self) -> str:
        return f"{self.model}-{self.size}-{self.check}" + (f"-{self.quant}" if self.quant else "")


@dataclasses.dataclass(frozen=True)
class Settings:
    devices: tuple[str, ...] = ("host",)
    models: tuple[str, ...] = ("tinyllama",)
    accuracy_models: tuple[str, ...] = ("tinyllama",)
    accuracy_thresholds: Path | None = None  # drift bounds; None: accuracy.toml
    quants: tuple[str, ...] = ("none", "fp16", "dynamic_int8", "dynamic_int4_block32")
    size: str = "tiny"
    prefill: tuple[int, ...] = (128, 512)
    decode: tuple[int, ...] = (128,)
    threads: tuple[int, ...] = (4,)
    depth: tuple[int, ...] = (0,)
    cpus: tuple[int, ...] | None = None  # pin here instead of the device's fastest cores
    warmup: int = 1
    reps: int = 5
    bandwidth_probe_mb: int = 1024
    cv_limit_pct: float = 3.0
    cooldown_s: float = 60.0  # most seconds to wait between cells for temperatures to settle
    checkpoint_dir: Path | None = None
    seed: int = 1234
    runner_bin: Path | None = None
    runner_timeout: float = 600.0
    results_db: str = "results/results.db"
    report_dir: Path = Path("results")
    label: str | None = None
    baseline_run: int | None = None  # resolved before this session's run exists: a label means its last run
    gate: GateConfig = GateConfig()

    def cells(self) -> list[Cell]:
        return [Cell(m, self.size, q, d, p, n, t, k) for m, q, d, p, n, t, k in itertools.product(
            self.models, self.quants, self.devices, self.prefill, self.decode, self.threads, self.depth)]

    def accuracy_cells(self) -> list[AccuracyCell]:
        """Per model: vs transformers, vs its .tflite, then drift of each quantized recipe vs fp32."""
        return [AccuracyCell(m, self.size, check, quant) for m in self.accuracy_models
                for check, quant in [("reauthoring", None), ("conversion", None),
                                     *(("drift", q) for q in self.quants if q != "none")]]

    def workload(self, cell: Cell) -> Workload:
        return Workload(cell.prefill, cell.decode, cell.threads, self.warmup, self.reps, cell.depth, self.cpus,
                        self.bandwidth_probe_mb)


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


class BenchSession:
    def __init__(self, settings: Settings, argv: list[str] | None = None, log=sys.stderr):
        self.settings = settings
        self.argv = argv or []
        self.log = log
        self._store: Store | None = None
        self.run_id: int | None = None
        self._devices: dict[str, Device] = {}
        self._runners: dict[str, RunnerBuild] = {}
        self._baseline_temp: dict[str, float | None] = {}  # per device, taken before its first cell
        self._baseline_cells: list[dict] | None = None

    @property
    def store(self) -> Store:
        if self._store is None:  # opened on the first cell, so a session that measures nothing records no run
            self._store = Store(self.settings.results_db)
            self.run_id = self._start_run(self._store)
        return self._store

    def _start_run(self, store: Store) -> int:
        """The run this session's cells are stored under (pytest-xdist workers join their controller's)."""
        return store.start_run(self.settings.label, self.argv, git_commit(), HARNESS_VERSION)

    def device(self, name: str) -> Device:
        if name not in self._devices:
            self._devices[name] = open_device(name)
            self._baseline_temp[name] = self._devices[name].transport.state().max_temp_c()
        return self._devices[name]

    def runner_for(self, device: Device) -> RunnerBuild:
        from device_runners.build import build_runner, prebuilt_runner

        target = device.profile.runner_target
        if target not in self._runners:
            if self.settings.runner_bin:
                self._runners[target] = prebuilt_runner(self.settings.runner_bin, target)
            else:
                self._runners[target] = build_runner(target)
        return self._runners[target]

    def measure(self, cell: Cell) -> dict:
        """Convert (cached), run and store one cell; a failure is stored too, then re-raised.
        The result carries its row's id in the store (result_id), for the gate."""
        row = {"model": f"{cell.model}-{cell.size}", "quant": cell.quant, "device": cell.device,
               "prefill_len": cell.prefill, "decode_len": cell.decode, "depth": cell.depth}
        store, run_id = self.store, self.run_id
        try:
            spec = get_spec(cell.model, cell.size, self.settings.checkpoint_dir, self.settings.seed)
            artifact = ensure_artifact(spec, Recipe(cell.quant, cell.prefill, cell.kv_len), log=self.log)
            row |= {"artifact_sha256": artifact.sha256, "artifact_bytes": artifact.meta["bytes"]}
            device = self.device(cell.device)
            with device_lock(device.transport.identity, self.log):  # one process per device at a time
                waited = cooldown(device, self._baseline_temp[cell.device], max_wait_s=self.settings.cooldown_s)
                result = bench(device, self.runner_for(device), artifact.path, self.settings.workload(cell),
                               self.settings.runner_timeout, artifact.meta.get("compute"), self.settings.cv_limit_pct)
        except BaseException as e:  # Ctrl-C included: record what happened to this cell, keep the rest
            store.add_result(run_id, row | {"status": "failed", "error": f"{type(e).__name__}: {e}"})
            raise
        spread, roof = result["spread"], result["roofline"]
        row |= {
            "status": "ok", "threads": result["threads"], "cpus": ",".join(map(str, result["cpus"])),
            **{k: result[k] for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "init_ms", "init_warm_ms",
                                      "peak_rss_mb", "stable")},
            "prefill_cv_pct": spread["prefill_tok_s"]["cv_pct"], "decode_cv_pct": spread["decode_tok_s"]["cv_pct"],
            "decode_ci_low": spread["decode_tok_s"]["ci95"][0], "decode_ci_high": spread["decode_tok_s"]["ci95"][1],
            "warnings": "\n".join(result["warnings"]) or None,
            **{k: roof[k] for k in ("bandwidth_gb_s", "decode_bandwidth_share", "prefill_gflop_s")},
        }
        data = {key: result[key] for key in ("spread", "roofline", "runner", "command", "cpus", "device_state",
                                             "provenance", "warnings")}
        data |= {"device_facts": dataclasses.asdict(device.facts), "artifact": artifact.meta,
                 "cooldown_s": round(waited, 2)}
        return result | {"result_id": store.add_result(run_id, row, data)}

    def check_accuracy(self, cell: AccuracyCell) -> dict:
        """Run one accuracy check and store its figures under this session's run, pass or fail."""
        from harness.verify import run_check
        from models.registry import get_spec

        spec = get_spec(cell.model, cell.size, self.settings.checkpoint_dir, self.settings.seed)
        store, run_id = self.store, self.run_id
        try:
            result = run_check(spec, cell.check, cell.quant, self.settings.accuracy_thresholds)
        except Exception as e:  # a check that crashed is a failed row, not a missing one
            store.add_accuracy(run_id, spec.name, cell.quant or "none", cell.check, {}, [f"{type(e).__name__}: {e}"])
            raise
        store.add_accuracy(run_id, spec.name, cell.quant or "none", cell.check, result, result["failures"])
        return result

    def gate(self, result_id: int) -> CellVerdict:
        """Judge a stored cell against the gate's limits and, when one was chosen, the baseline run."""
        if self._baseline_cells is None and self.settings.baseline_run is not None:
            self._baseline_cells = self.store.results_frame(self.settings.baseline_run).to_dict("records")
        rec = self.store.results_frame(result_id=result_id).to_dict("records")[0]
        return evaluate_cell(rec, self._baseline_cells, self.settings.gate)

    def close(self) -> list[Path]:
        """Finish the run, write its report (against the baseline, if any) and the dashboard of the whole
        history; their paths, none when nothing was measured."""
        self.close_devices()
        if self._store is None:
            return []
        from reports.render import render_dashboard, render_run_report

        self._store.finish_run(self.run_id)
        folder = Path(self.settings.report_dir)
        outs = [render_run_report(self._store, self.run_id, folder / f"run-{self.run_id}.html",
                                  self.settings.baseline_run, self.settings.gate),
                render_dashboard(self._store, folder / "dashboard.html", self.settings.gate)]
        return outs

    def close_devices(self) -> None:
        """Remove what this session left on its devices (working folders; the file cache stays)."""
        for device in self._devices.values():
            device.transport.close()
