"""pytest-xdist across devices: `pytest suites/ -n 2 --device adb:A,adb:B` runs each device's cells on one
worker (-n alone means --dist loadgroup, which schedules by device here; --dist load or others are xdist's own),
and all workers store their cells under one run, which the controller finishes and reports.

The controller names a file; the first worker with a cell to store starts the run and writes its id there, the
others read it. So a session that measures nothing still records no run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import filelock
import pytest
from xdist.scheduler import LoadScopeScheduling

from harness.run.session import BenchSession
from harness.run.settings import Settings
from harness.store.store import Store
from suites.plugin.pytest_plugin import SESSION, SETTINGS

RUN_FILE = "litert_bench_run_file"  # key of the controller's file in each worker's workerinput


class WorkerSession(BenchSession):
    def __init__(self, settings: Settings, argv: list[str], run_file: Path):
        super().__init__(settings, argv)
        self.run_file = run_file
        self._run_lock = filelock.FileLock(f"{run_file}.lock")

    @property
    def store(self) -> Store:
        # One worker at a time opens the database and starts or joins the run: workers that create a new SQLite
        # file's tables at the same moment collide.
        with self._run_lock:
            return super().store

    def _start_run(self, store: Store) -> int:
        if self.run_file.exists():
            return int(self.run_file.read_text())
        run_id = super()._start_run(store)
        self.run_file.write_text(str(run_id))
        return run_id

    def close(self) -> None:
        self.close_devices()  # the controller finishes the run and writes the reports, once every worker is done


class ControllerSession(BenchSession):
    def __init__(self, settings: Settings, argv: list[str]):
        super().__init__(settings, argv)
        self.run_file = Path(tempfile.mkdtemp(prefix="litert-bench-run-")) / "run_id"

    def _start_run(self, store: Store) -> int:
        return int(self.run_file.read_text())

    def close(self) -> None:
        try:
            if self.run_file.exists():
                self.store  # noqa: B018 - opens the run the workers stored their cells under
            super().close()
        finally:
            shutil.rmtree(self.run_file.parent, ignore_errors=True)


class DeviceScheduling(LoadScopeScheduling):
    """xdist's loadscope with one scope per device: a worker takes every cell of a device, so no two workers
    share a phone. (xdist's own loadgroup appends the group to `item._nodeid`, which pytest 9 no longer reads.)"""

    def __init__(self, config: pytest.Config, log, devices: tuple[str, ...]):
        super().__init__(config, log)
        self.devices = devices

    def _split_scope(self, nodeid: str) -> str:
        # Cell ids read {model}-{size}-{quant}-{device}-p{prefill}-...; anything else is a scope of its own.
        return next((device for device in self.devices if f"-{device}-p" in nodeid), nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Before xdist turns `-n N` into --dist load, which would spread one phone's cells over several workers.
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "no":
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> DeviceScheduling | None:
    if config.getoption("dist") == "loadgroup":
        return DeviceScheduling(config, log, config.stash[SETTINGS].devices)
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Controller, once per worker: hand it the file that names the run."""
    config = node.config
    if SESSION not in config.stash:
        config.stash[SESSION] = ControllerSession(config.stash[SETTINGS], list(config.invocation_params.args))
    node.workerinput[RUN_FILE] = str(config.stash[SESSION].run_file)


@pytest.hookimpl(trylast=True)  # after the harness plugin has read the settings
def pytest_configure(config: pytest.Config) -> None:
    run_file = getattr(config, "workerinput", {}).get(RUN_FILE)
    if run_file:
        config.stash[SESSION] = WorkerSession(config.stash[SETTINGS], list(config.invocation_params.args),
                                              Path(run_file))
