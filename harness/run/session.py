"""A benchmark session: the cells of a run, each read as spec → artifact → device bench → store → verdict.

The pytest plugin (suites/plugin) drives it; nothing here depends on pytest. The session stores every cell the
moment it is measured, judges it once (harness/gate/verdicts.py) and leaves reports to whoever shows the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

from device_runners.device import Device, open_device
from device_runners.runners.native import RunnerBuild, runner_for_target
from harness.accuracy.agreement import DECODE, PREFILL, check_agreement
from harness.accuracy.conversion import CONVERSION_DECODE, CONVERSION_PREFILL
from harness.accuracy.drift import DRIFT_DECODE, DRIFT_PREFILL
from harness.accuracy.registry import run_check
from harness.artifacts.cache import Artifact, ensure_artifact, ensure_artifacts
from harness.artifacts.llama_cpp import LlamaCppBuildError
from harness.artifacts.recipe import Recipe, kv_len_for
from harness.artifacts.runtime_inputs import RuntimeUnsupported, runtime_input
from harness.gate.judge import CellVerdict
from harness.gate.verdicts import judge, judge_accuracy
from harness.measure.bench import Measurement
from harness.measure.device_bench import DeviceBench
from harness.measure.metrics import CellResult
from harness.measure.provenance import HARNESS_VERSION, git_commit
from harness.measure.runtimes import unsupported_reason
from harness.run.settings import AccuracyCell, Cell, Settings
from harness.store.store import Store, StoreError
from models.registry import get_spec
from models.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class MeasuredCell:
    """A cell as stored: its row's id (what the gate judges), its result and the measurement behind it."""

    result_id: int
    result: CellResult
    measurement: Measurement


def _keep_cause(error: BaseException, store_failure) -> None:
    """Store a failed cell's row; when even that fails (spilled, or lost), the cell's own error stays the one
    raised and says so in a note."""
    try:
        store_failure()
    except StoreError as e:
        error.add_note(str(e))


def cell_recipe(cell: Cell) -> Recipe:
    """The artifact a speed cell measures."""
    return Recipe(cell.quant, cell.prefill, cell.kv_len)


def check_recipe(cell: AccuracyCell) -> Recipe | None:
    """The artifact an accuracy check opens at the lengths it runs (drift and agreement: their recipe; the
    conversion check: fp32); None for reauthoring, which converts nothing."""
    lengths = {"conversion": (CONVERSION_PREFILL, CONVERSION_DECODE), "drift": (DRIFT_PREFILL, DRIFT_DECODE),
               "agreement": (PREFILL, DECODE)}.get(cell.check)
    return None if lengths is None else Recipe(cell.quant or "none", lengths[0], kv_len_for(*lengths))


class BenchSession:
    def __init__(self, settings: Settings, argv: list[str] | None = None, log=sys.stderr):
        self.settings = settings
        self.argv = argv or []
        self.log = log
        self._store: Store | None = None
        self.run_id: int | None = None
        self._benches: dict[str, DeviceBench] = {}
        self._runners: dict[str, RunnerBuild] = {}
        self._baseline_cells: list[dict] | None = None
        self._llama_cpp_error: str | None = None  # a failed llama.cpp build, said once and failing its cells
        # sha256 → (spec, artifact) of every .tflite this process measured: the report's graph pages. (Under
        # pytest-xdist the workers measure, and the controller that writes the report has none.)
        self.artifacts: dict[str, tuple[ModelSpec, Artifact]] = {}

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
        return self.device_bench(name).device

    def device_bench(self, name: str) -> DeviceBench:
        """The bench of a device, opened on its first cell (its start temperature is taken then)."""
        if name not in self._benches:
            device = open_device(name)
            s = self.settings
            self._benches[name] = DeviceBench(device, self.runner_for(device), timeout=s.runner_timeout,
                                              cooldown_s=s.cooldown_s, cv_limit_pct=s.cv_limit_pct, log=self.log)
        return self._benches[name]

    def runner_for(self, device: Device) -> RunnerBuild:
        target = device.profile.runner_target
        if target not in self._runners:
            s = self.settings
            self._runners[target] = runner_for_target(target, s.runner_bin, s.runner_app)
        return self._runners[target]

    def artifacts_needed(self, cells: list[Cell], accuracy_cells: list[AccuracyCell]) -> list[tuple[ModelSpec, Recipe]]:
        """The (spec, recipe) pairs these cells convert, in the order they first need them (float roots too)."""
        pairs = []
        for cell in cells:  # llama.cpp converts the weights its own way; LiteRT-LM bundles the transposed layout
            if cell.runtime == "litert":
                pairs.append((self._spec(cell), cell_recipe(cell)))
            elif cell.runtime == "litert-lm" and cell.device == "host":
                pairs.append((self._spec(cell), dataclasses.replace(cell_recipe(cell), kv_layout="transposed")))
        for acc in accuracy_cells:
            recipe = check_recipe(acc)
            if recipe is not None:  # reauthoring compares torch with transformers: no artifact
                pairs.append((self._spec(acc), recipe))
        return pairs

    def _spec(self, cell: Cell | AccuracyCell) -> ModelSpec:
        return get_spec(cell.model, cell.size, self.settings.checkpoint_dir, self.settings.seed)

    def prepare(self, cells: list[Cell], accuracy_cells: list[AccuracyCell], jobs: int, log=None) -> None:
        """Convert what the cells need before the first is measured, `jobs` conversions at a time: conversion
        is mostly single-threaded Python, so on 2 cores two at once nearly halve a cold first run, and no
        measurement runs beside them."""
        log = log or self.log
        ensure_artifacts(self.artifacts_needed(cells, accuracy_cells), jobs=jobs, log=log, keep_going=True)
        # The host's runner too (a minute's build on a fresh machine), where its lines can be seen: inside the
        # first cell they would be captured. Other devices' runners are built when the device is opened.
        if any(c.runtime == "llama.cpp" for c in cells):
            self._build_llama_cpp(log)
        if "host" not in self._runners and any(c.device == "host" and c.runtime == "litert" for c in cells):
            with contextlib.redirect_stderr(log):
                try:
                    self._runners["host"] = runner_for_target("host", self.settings.runner_bin,
                                                              self.settings.runner_app)
                except Exception as e:  # the first host cell builds it again and fails there, as its own
                    print(f"building the host runner ahead of its cells failed ({e})", file=log, flush=True)

    def _build_llama_cpp(self, log) -> None:
        """llama.cpp's host build (minutes on a fresh machine: its lines belong here, not inside a cell). A failure
        is said once; each llama.cpp cell then fails with the build log's tail, the other cells run."""
        from harness.artifacts.llama_cpp import ensure_llama_cpp

        try:
            ensure_llama_cpp("host", log=log)
        except LlamaCppBuildError as e:
            self._llama_cpp_error = f"llama.cpp did not build: {e}"
            print("building llama.cpp failed: its cells will fail with the build log", file=log, flush=True)

    def measure(self, cell: Cell) -> MeasuredCell:
        """Convert (cached), run and store one cell; a failure is stored too, then re-raised. A runtime that
        cannot measure the cell raises RuntimeUnsupported and stores nothing (the suite skips the cell)."""
        result = CellResult(model=f"{cell.model}-{cell.size}", quant=cell.quant, device=cell.device,
                            runtime=cell.runtime, prefill_len=cell.prefill, decode_len=cell.decode, depth=cell.depth)
        store, run_id = self.store, self.run_id
        try:
            if cell.runtime == "litert":
                spec = self._spec(cell)
                artifact = ensure_artifact(spec, cell_recipe(cell), log=self.log)
                result.artifact_sha256, result.artifact_bytes = artifact.sha256, artifact.meta["bytes"]
                self.artifacts[artifact.sha256] = (spec, artifact)
                bench = self.device_bench(cell.device)
                measurement = bench.measure(artifact.path, self.settings.workload(cell),
                                            artifact.meta.get("compute"))
                artifact_meta = artifact.meta
            else:
                bench, measurement, artifact_meta = self._measure_runtime(cell)
                result.artifact_sha256 = measurement.provenance["sha256"]["model"]
                result.artifact_bytes = measurement.report.model_bytes
        except RuntimeUnsupported:
            raise
        except BaseException as e:  # Ctrl-C included: record what happened to this cell, keep the rest
            result.status, result.error = "failed", f"{type(e).__name__}: {e}"
            _keep_cause(e, lambda: store.add_result(run_id, result))
            raise
        # A row the database refuses goes to a spill file: SpilledError fails the cell naming the file.
        result = dataclasses.replace(result, status="ok", emulated=bench.device.profile.emulated,
                                     **measurement.figures())
        data = measurement.to_json() | {"device_facts": dataclasses.asdict(bench.device.facts),
                                        "artifact": artifact_meta, "cooldown_s": round(bench.waited_s, 2)}
        return MeasuredCell(store.add_result(run_id, result, data), result, measurement)

    def _measure_runtime(self, cell: Cell) -> tuple[DeviceBench, Measurement, dict]:
        """A cell of another runtime: its own file of the same weights (harness/artifacts/runtime_inputs.py),
        measured on the same device, cores, threads and lengths."""
        bench = self.device_bench(cell.device)
        reason = unsupported_reason(cell.runtime, bench.device)
        if reason:  # before a bundle or a GGUF is built for nothing
            raise RuntimeUnsupported(reason)
        if cell.runtime == "llama.cpp" and self._llama_cpp_error is not None:
            raise RuntimeError(self._llama_cpp_error)  # one build failure fails every llama.cpp cell with its log
        spec = self._spec(cell)
        try:
            model = runtime_input(cell.runtime, spec, cell_recipe(cell), log=self.log)
        except LlamaCppBuildError as e:
            self._llama_cpp_error = f"llama.cpp did not build: {e}"
            raise
        # The prefill FLOPs of the LiteRT artifact of the same recipe where one is cached: the same model's work.
        compute = None
        if cell.runtime == "litert-lm":
            compute = ensure_artifact(spec, dataclasses.replace(cell_recipe(cell), kv_layout="transposed"),
                                      log=self.log).meta.get("compute")
        measurement = bench.measure_runtime(cell.runtime, model, self.settings.workload(cell), compute)
        return bench, measurement, {"path": str(model), "bytes": measurement.report.model_bytes,
                                    "runtime": cell.runtime}

    def check_accuracy(self, cell: AccuracyCell) -> tuple[dict, CellVerdict]:
        """Run one accuracy check, store its figures under this session's run, pass or fail, and judge the row
        once (its bounds; with a baseline, its drift from the baseline run's same check)."""
        spec = self._spec(cell)
        store, run_id = self.store, self.run_id
        try:
            result = self._run_check(spec, cell)
        except Exception as e:  # a check that crashed is a failed row, not a missing one
            failure = [f"{type(e).__name__}: {e}"]
            _keep_cause(e, lambda: store.add_accuracy(run_id, spec.name, cell.quant or "none", cell.stored_check,
                                                      {}, failure))
            raise
        row = store.add_accuracy(run_id, spec.name, cell.quant or "none", cell.stored_check, result,
                                 result["failures"])
        return result, judge_accuracy(store, row, run_id, self.settings.baseline_run, self.settings.gate)

    def _run_check(self, spec: ModelSpec, cell: AccuracyCell) -> dict:
        if cell.check == "agreement":  # the device's runner against the host's, on the same file
            recipe = check_recipe(cell)
            artifact = ensure_artifact(spec, recipe, log=self.log)
            # The float artifact measures the recipe's own error, which bounds how far the device may differ.
            reference = None if cell.quant == "none" else ensure_artifact(
                spec, dataclasses.replace(recipe, quant="none"), log=self.log)
            return check_agreement(spec.name, self.device_bench(cell.device), self.device_bench("host"), artifact,
                                   reference)
        return run_check(spec, cell.check, cell.quant, self.settings.accuracy_thresholds)

    def gate(self, result_id: int) -> CellVerdict:
        """Judge a stored cell once against the gate's limits and, when one was chosen, the baseline run; the
        verdict is stored with the cell for every summary and report after it."""
        s = self.settings
        if self._baseline_cells is None and s.baseline_run is not None:
            self._baseline_cells = self.store.results_frame(s.baseline_run).to_dict("records")
        return judge(self.store, result_id, s.baseline_run, s.gate, self._baseline_cells)

    def close(self) -> None:
        """Finish the run and clean the devices; reports are the caller's (suites/plugin writes them)."""
        self.close_devices()
        if self._store is not None:
            self._store.finish_run(self.run_id)

    def close_devices(self) -> None:
        """Remove what this session left on its devices (working folders; the file cache stays)."""
        for bench in self._benches.values():
            bench.close()
