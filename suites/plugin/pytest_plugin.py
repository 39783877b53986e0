"""The pytest plugin behind `pytest suites/`: options, the `cell` parametrization, fixtures (measure, gate),
the end-of-run table, gate summary (terminal and $GITHUB_STEP_SUMMARY) and reports.

Registered by the repository's root conftest.py (pytest's documented pytest_addoption + fixture pattern).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from harness.common.options import OPTIONS, OptionError
from harness.common.signals import interrupt_on_termination, signals_deferred
from harness.gate.config import GateConfig, GateConfigError, config_from
from harness.gate.judge import CellVerdict
from harness.gate.verdicts import accuracy_verdicts, run_verdicts
from harness.run.session import BenchSession, MeasuredCell
from harness.run.settings import Cell, Settings

SETTINGS = pytest.StashKey[Settings]()
SESSION = pytest.StashKey[BenchSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("litert-bench", "LLM benchmark cells (model × quant × device × lengths)")
    for option in OPTIONS.values():  # the one registry: names, defaults and help as the CLI shows them
        g.addoption(option.flag, dest=f"litert_{option.dest}", default=None, help=option.help_text())


def _choices(name: str, given: tuple[str, ...]) -> list[str]:
    """The valid values of an option whose choices live in a later stage than the registry."""
    from device_runners.device import is_address_name, known_devices
    from harness.artifacts.recipe import QUANTS
    from harness.artifacts.runtime_inputs import RUNTIMES
    from models.registry import FAMILIES
    from models.spec import SIZES

    return {"models": sorted(FAMILIES), "quants": list(QUANTS), "sizes": list(SIZES), "runtimes": list(RUNTIMES),
            "devices": [*known_devices(), *filter(is_address_name, given)]}[name]


def _values(config: pytest.Config) -> dict:
    """Every option parsed and checked: bad values raise pytest.UsageError naming the option and what is valid."""
    values = {}
    for dest, option in OPTIONS.items():
        raw = config.getoption(f"litert_{dest}")
        try:
            value = option.parse(raw) if raw is not None else option.default
        except OptionError as e:
            raise pytest.UsageError(str(e)) from None
        if option.choices and value is not None:
            given = value if isinstance(value, tuple) else (value,)
            valid = _choices(option.choices, given)
            bad = [g for g in given if g not in valid]
            if bad:
                raise pytest.UsageError(f"{option.flag}: unknown {', '.join(map(repr, bad))}; valid: "
                                        f"{', '.join(valid)}")
        values[dest] = value
    return values


def settings_from(config: pytest.Config) -> Settings:
    """Validated settings; bad names raise pytest.UsageError listing the valid ones."""
    from models.registry import FAMILIES

    v = _values(config)
    # `-m full` alone means the full-size configs: their cells are the ones marked `full`.
    size = v["size"] or ("full" if "full" in (config.option.markexpr or "") else Settings.size)
    ckpt, runner_bin, runner_app = v["checkpoint_dir"], v["runner_bin"], v["runner_app"]
    if ckpt and not Path(ckpt).is_dir():
        raise pytest.UsageError(f"--checkpoint-dir {ckpt!r} is not a directory")
    if runner_bin and not Path(runner_bin).is_file():
        raise pytest.UsageError(f"--runner-bin {runner_bin!r} is not a file")
    if runner_app and not (Path(runner_app).is_file() and runner_app.endswith(".ipa")):
        raise pytest.UsageError(f"--runner-app {runner_app!r} is not an app package (.ipa)")
    root = config.rootpath
    results_db = config.getoption("litert_results_db") or str(root / v["results_db"])
    return Settings(
        devices=v["device"], models=v["models"] or Settings.models, quants=v["quant"], runtimes=v["runtime"],
        accuracy_models=v["models"] or tuple(FAMILIES),
        accuracy_thresholds=_accuracy_thresholds(v["accuracy_thresholds"]), size=size,
        prefill=v["prefill"], decode=v["decode"], threads=v["threads"], warmup=v["warmup"], reps=v["reps"],
        depth=v["depth"], cpus=v["cpus"], bandwidth_probe_mb=v["bandwidth_probe_mb"],
        weight_cache=v["weight_cache"], profile=v["profile"], energy=v["energy"], energy_idle_s=v["energy_idle"],
        graph_pages=v["graph_pages"], cv_limit_pct=v["cv_limit"],
        cooldown_s=v["cooldown"], checkpoint_dir=Path(ckpt).resolve() if ckpt else None, seed=v["seed"],
        runner_bin=Path(runner_bin).resolve() if runner_bin else None,
        runner_app=Path(runner_app).resolve() if runner_app else None, runner_timeout=v["runner_timeout"],
        results_db=results_db, report_dir=Path(config.getoption("litert_report") or root / v["report"]),
        label=v["run_label"], baseline_run=_baseline_run(results_db, v["baseline"]), gate=_gate_config(v["gate"]),
    )


def _baseline_run(results_db: str, ref: str | None) -> int | None:
    """Resolved now, before this session's run exists: `--run-label nightly --baseline nightly` then means
    the previous nightly run, not this one."""
    if ref is None:
        return None
    from harness.store.store import Store

    store = Store(results_db)
    try:
        return store.resolve_run(ref)
    except LookupError as e:
        raise pytest.UsageError(f"--baseline: {e}") from None
    finally:
        store.close()


def _gate_config(path: str | None) -> GateConfig:
    try:
        return config_from(path)
    except GateConfigError as e:
        raise pytest.UsageError(f"--gate: {e}") from None


def _accuracy_thresholds(path: str | None) -> Path | None:
    from harness.accuracy.thresholds import ThresholdsError, load_thresholds

    try:
        load_thresholds(path)  # now, so a bad file is a usage error before anything is converted
    except ThresholdsError as e:
        raise pytest.UsageError(f"--accuracy-thresholds: {e}") from None
    return Path(path).resolve() if path else None


def pytest_configure(config: pytest.Config) -> None:
    # The markers (performance, accuracy, conversion, full) are declared once, in pyproject.toml.
    config.stash[SETTINGS] = settings_from(config)
    _check_report_dir(config.stash[SETTINGS].report_dir)
    config.stash[_TERMINATION] = interrupt_on_termination()


def pytest_unconfigure(config: pytest.Config) -> None:
    for sig, handler in config.stash.get(_TERMINATION, {}).items():
        signal.signal(sig, handler)


_TERMINATION = pytest.StashKey[dict]()


def _check_report_dir(folder: Path) -> None:
    """Now, not after minutes of measuring: a report folder that cannot be made or written is a usage error."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise pytest.UsageError(f"--report {folder}: cannot make the report folder there, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"--report {folder}: cannot write the report folder, {existing} is not writable")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # xdist: the controller imports, once
        _import_spilled(session.config)


def _import_spilled(config: pytest.Config) -> None:
    """Cells an earlier session measured but could not store (spill files beside the database) go in now."""
    from harness.store.store import Store, StoreError, pending_spills

    results_db = config.stash[SETTINGS].results_db
    if not pending_spills(results_db):  # the usual case: no database opened, no run recorded
        return
    say, store = _say(config), None
    try:
        store = Store(results_db)
        imported, problems = store.import_spilled()
    except StoreError as e:  # still locked, say: the files stay for the next session
        say(f"spilled cells not imported yet: {e}")
        return
    finally:
        if store is not None:
            store.close()
    say(f"imported {len(imported)} cells spilled by an earlier session into {store.url}")
    for problem in problems:
        say(f"spill file not imported: {problem}")


def _say(config: pytest.Config):
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return reporter.write_line if reporter is not None else (lambda line: print(line, file=sys.stderr))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        settings = metafunc.config.stash[SETTINGS]
        marks = [pytest.mark.full] if settings.size == "full" else []
        metafunc.parametrize("cell", [pytest.param(c, id=c.id, marks=marks) for c in settings.cells()])
    if "accuracy_cell" in metafunc.fixturenames:
        settings = metafunc.config.stash[SETTINGS]
        marks = [pytest.mark.accuracy, *([pytest.mark.full] if settings.size == "full" else [])]
        metafunc.parametrize("accuracy_cell", [pytest.param(c, id=c.id, marks=marks)
                                               for c in settings.accuracy_cells()])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The runtime-overhead cells (the native runner against LiteRT's in-process loop) run when -m names them."""
    if "overhead" in (config.option.markexpr or ""):
        return
    overhead = [item for item in items if item.get_closest_marker("overhead")]
    if overhead:
        config.hook.pytest_deselected(items=overhead)
        items[:] = [item for item in items if not item.get_closest_marker("overhead")]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Convert what the selected cells need before the first is measured, one conversion per core."""
    config = session.config
    if config.option.collectonly or SETTINGS not in config.stash:
        return
    params = [item.callspec.params for item in session.items if hasattr(item, "callspec")]
    cells = [p["cell"] for p in params if "cell" in p]
    accuracy_cells = [p["accuracy_cell"] for p in params if "accuracy_cell" in p]
    if cells or accuracy_cells:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        quiet = reporter is None or config.get_verbosity() < 0  # -q: conversions say nothing unless they fail
        log = _TerminalLines(None if quiet else reporter)
        _bench_session(config).prepare(cells, accuracy_cells, jobs=len(os.sched_getaffinity(0)), log=log)


class _TerminalLines(io.TextIOBase):
    """A text stream that hands whole lines to pytest's terminal reporter (conversion progress: one line per
    phase, as a CI log wants them); with no reporter it keeps them to itself."""

    def __init__(self, reporter) -> None:
        self.reporter, self._partial, self._lock = reporter, "", threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:  # conversions run in threads, one per core
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                if self.reporter is not None:
                    self.reporter.write_line(line)
        return len(text)


def _bench_session(config: pytest.Config) -> BenchSession:
    if SESSION not in config.stash:
        config.stash[SESSION] = BenchSession(config.stash[SETTINGS], argv=list(config.invocation_params.args))
    return config.stash[SESSION]


@pytest.fixture(scope="session")
def bench_session(request: pytest.FixtureRequest) -> BenchSession:
    return _bench_session(request.config)


@pytest.fixture
def measure(bench_session: BenchSession):
    """measure(cell) → the MeasuredCell, stored in the results database as soon as it is measured. A runtime
    that cannot measure the cell (no counterpart of its recipe, a family its converter refuses, a device it does
    not run on) skips it with that reason."""
    from harness.artifacts.runtime_inputs import RuntimeUnsupported

    def run(cell: Cell) -> MeasuredCell:
        try:
            return bench_session.measure(cell)
        except RuntimeUnsupported as e:
            pytest.skip(str(e))

    return run


@pytest.fixture
def gate(bench_session: BenchSession):
    """gate(measured) judges a measured cell (what `measure` returned) against the thresholds file and the
    baseline run, once, and stores the verdict; a failing cell fails its test with the figures."""

    def check(cell: MeasuredCell) -> CellVerdict:
        verdict = bench_session.gate(cell.result_id)
        if not verdict.passed:
            pytest.fail(verdict.message(), pytrace=False)
        return verdict

    return check


def pytest_sessionfinish(session: pytest.Session) -> None:
    bench = session.config.stash.get(SESSION, None)
    if bench is not None:
        with signals_deferred():  # a second Ctrl-C must not cost the run its finish time or leave its runners
            bench.close()
        if bench.run_id is not None and not hasattr(session.config, "workerinput"):  # xdist: the controller's
            _write_reports_or_say_why(session, bench)


def _write_reports_or_say_why(session: pytest.Session, bench: BenchSession) -> None:
    """A report that cannot be written is one line at the end and a failed exit, not an INTERNALERROR: the
    run's figures are stored already."""
    from reports.render import ReportError

    try:
        session.config.stash[_REPORTS] = write_reports(bench)
    except ReportError as e:
        session.config.stash[_REPORT_ERROR] = f"{e}; the run's results are stored in {bench.store.url}"
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def write_reports(bench: BenchSession) -> list[Path]:
    """The run's comparison report (against the baseline, if any) and the dashboard of the whole history; first,
    with --graph-pages on, the graph page of each artifact the run measured, which the report links."""
    from reports.render import render_dashboard, render_run_report

    s, folder = bench.settings, Path(bench.settings.report_dir)
    if s.graph_pages and bench.artifacts:
        from reports.graph import write_graph_pages

        write_graph_pages(bench.artifacts.values(), folder, bench.log)
    return [render_run_report(bench.store, bench.run_id, folder / f"run-{bench.run_id}.html", s.baseline_run, s.gate),
            render_dashboard(bench.store, folder / "dashboard.html", s.gate)]


_REPORTS = pytest.StashKey[list[Path]]()
_REPORT_ERROR = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION, None)
    if bench is None or bench.run_id is None or hasattr(config, "workerinput"):  # xdist: the controller reports
        return
    from reports.gate_summary import publish
    from reports.table import format_accuracy, format_table

    terminalreporter.section(f"litert-bench run {bench.run_id}")
    results = bench.store.results_frame(bench.run_id)
    if len(results):
        terminalreporter.write_line(format_table(results))
    checks = bench.store.accuracy_frame(bench.run_id)
    if len(checks):
        terminalreporter.section("accuracy")
        terminalreporter.write_line(format_accuracy(checks))
    # From the store, not from the cells' tests: every cell and check was judged (and its verdict stored) when
    # it was measured, pytest-xdist workers' cells in other processes.
    settings = bench.settings
    verdicts = (run_verdicts(bench.store, bench.run_id, settings.baseline_run, settings.gate)
                + accuracy_verdicts(bench.store, bench.run_id, settings.baseline_run, settings.gate))
    if verdicts:
        terminalreporter.section("release gate")
        terminalreporter.write_line(publish(verdicts, bench.run_id, settings.baseline_run, settings.gate.source))
    terminalreporter.write_line(f"results: {bench.store.url}")
    for path in config.stash.get(_REPORTS, []):
        terminalreporter.write_line(f"report:  {path}")
    if _REPORT_ERROR in config.stash:
        terminalreporter.write_line(f"error: {config.stash[_REPORT_ERROR]}", red=True, bold=True)


__all__ = ["Cell"]
