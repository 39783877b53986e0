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
from harness.measure import Workload, bench
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

    @property
    def id(self) -> str:
        return f"{self.model}-{self.size}-{self.quant}-{self.device}-p{self.prefill}-d{self.decode}-t{self.threads}"


@dataclasses.dataclass(frozen=True)
class Settings:
    devices: tuple[str, ...] = ("host",)
    models: tuple[str, ...] = ("tinyllama",)
    quants: tuple[str, ...] = ("none", "fp16", "dynamic_int8", "dynamic_int4_block32")
    size: str = "tiny"
    prefill: tuple[int, ...] = (128,)
    decode: tuple[int, ...] = (128,)
    threads: tuple[int, ...] = (4,)
    warmup: int = 1
    reps: int = 5
    checkpoint_dir: Path | None = None
    seed: int = 1234
    runner_bin: Path | None = None
    runner_timeout: float = 600.0
    results_db: str = "results/results.db"
    report_dir: Path = Path("results")
    label: str | None = None

    def cells(self) -> list[Cell]:
        return [Cell(m, self.size, q, d, p, n, t) for m, q, d, p, n, t in
                itertools.product(self.models, self.quants, self.devices, self.prefill, self.decode, self.threads)]


class BenchSession:
    def __init__(self, settings: Settings, argv: list[str] | None = None, log=sys.stderr):
        self.settings = settings
        self.argv = argv or []
        self.log = log
        self._store: Store | None = None
        self.run_id: int | None = None
        self._devices: dict[str, Device] = {}
        self._runners: dict[str, RunnerBuild] = {}

    @property
    def store(self) -> Store:
        if self._store is None:  # opened on the first cell, so a session that measures nothing records no run
            self._store = Store(self.settings.results_db)
            self.run_id = self._store.start_run(self.settings.label, self.argv, git_commit(), HARNESS_VERSION)
        return self._store

    def device(self, name: str) -> Device:
        if name not in self._devices:
            self._devices[name] = open_device(name)
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
        """Convert (cached), run and store one cell; a failure is stored too, then re-raised."""
        row = {"model": f"{cell.model}-{cell.size}", "quant": cell.quant, "device": cell.device,
               "prefill_len": cell.prefill, "decode_len": cell.decode}
        store, run_id = self.store, self.run_id
        try:
            spec = get_spec(cell.model, cell.size, self.settings.checkpoint_dir, self.settings.seed)
            recipe = Recipe(cell.quant, cell.prefill, kv_len_for(cell.prefill, cell.decode))
            artifact = ensure_artifact(spec, recipe, log=self.log)
            row |= {"artifact_sha256": artifact.sha256, "artifact_bytes": artifact.meta["bytes"]}
            device = self.device(cell.device)
            workload = Workload(cell.prefill, cell.decode, cell.threads, self.settings.warmup, self.settings.reps)
            result = bench(device, self.runner_for(device), artifact.path, workload, self.settings.runner_timeout)
        except BaseException as e:  # Ctrl-C included: record what happened to this cell, keep the rest
            store.add_result(run_id, row | {"status": "failed", "error": f"{type(e).__name__}: {e}"})
            raise
        spread = result["spread"]
        row |= {
            "status": "ok", "threads": result["threads"],
            **{k: result[k] for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "init_ms", "peak_rss_mb")},
            "prefill_cv_pct": spread["prefill_tok_s"]["cv_pct"], "decode_cv_pct": spread["decode_tok_s"]["cv_pct"],
        }
        data = {"spread": spread, "runner": result["runner"], "command": result["command"], "cpus": result["cpus"],
                "device_facts": dataclasses.asdict(device.facts), "artifact": artifact.meta}
        store.add_result(run_id, row, data)
        return result

    def close(self) -> Path | None:
        """Finish the run and write its report; the report's path, or None when nothing was measured."""
        if self._store is None:
            return None
        from reports.render import render_run_report

        self._store.finish_run(self.run_id)
        out = render_run_report(self._store, self.run_id, Path(self.settings.report_dir) / f"run-{self.run_id}.html")
        for device in self._devices.values():
            device.transport.close()
        return out
