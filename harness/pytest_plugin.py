"""The pytest plugin behind `pytest suites/`: options, the `cell` parametrization, fixtures (measure, gate),
the end-of-run table, gate summary (terminal and $GITHUB_STEP_SUMMARY) and reports.

Registered by the repository's root conftest.py (pytest's documented pytest_addoption + fixture pattern).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate import CellVerdict, GateConfig, GateConfigError, config_from, evaluate_run
from harness.session import BenchSession, Cell, Settings, parse_cpus

SETTINGS = pytest.StashKey[Settings]()
SESSION = pytest.StashKey[BenchSession]()
_DEFAULTS = Settings()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ints(option: str, value: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in _csv(value))
    except ValueError:
        raise pytest.UsageError(f"{option} takes comma-separated whole numbers, got {value!r}") from None
    if not values or min(values) < 1:
        raise pytest.UsageError(f"{option} needs numbers >= 1, got {value!r}")
    return values


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("litert-bench", "LLM benchmark cells (model × quant × device × lengths)")
    g.addoption("--device", default=",".join(_DEFAULTS.devices),
                help="device profile(s) or adb:SERIAL[@HOST:PORT], comma-separated [host]")
    g.addoption("--models", default=None, help="model families, comma-separated [performance: tinyllama; "
                                               "accuracy: every family]")
    g.addoption("--quant", default=",".join(_DEFAULTS.quants), help="quantization recipes, comma-separated "
                                                                   "(accuracy: the drift cells, fp32 excepted)")
    g.addoption("--size", default=None, help="tiny (CI-sized) or full (published config) [tiny; full under -m full]")
    g.addoption("--accuracy-thresholds", default=None, help="quantization drift bounds (TOML) [accuracy.toml]")
    g.addoption("--prefill", default="128,512", help="prefill length(s) [128,512]")
    g.addoption("--decode", default="128", help="decode length(s) [128]")
    g.addoption("--depth", default="0", help="KV positions filled before the timed decode, list [0]")
    g.addoption("--threads", default="4", help="threads; fewer where the device has fewer cores [4]")
    g.addoption("--cpus", default=None, help="pin to these cores (e.g. 4-7 or 0,2) instead of the fastest ones")
    g.addoption("--bandwidth-probe-mb", type=int, default=_DEFAULTS.bandwidth_probe_mb,
                help="size of the runner's memory-bandwidth probe; 0 disables the roofline share [1024]")
    g.addoption("--cv-limit", type=float, default=_DEFAULTS.cv_limit_pct,
                help="CV (%%) above which a figure is flagged unstable [3]")
    g.addoption("--cooldown", type=float, default=_DEFAULTS.cooldown_s,
                help="most seconds to wait between cells for temperatures to settle [60]")
    g.addoption("--reps", type=int, default=_DEFAULTS.reps, help="measured repetitions per cell [5]")
    g.addoption("--warmup", type=int, default=_DEFAULTS.warmup, help="discarded warmup repetitions [1]")
    g.addoption("--checkpoint-dir", default=None, help="local HF safetensors checkpoint (else seeded random weights)")
    g.addoption("--seed", type=int, default=_DEFAULTS.seed, help="seed of the random weights [1234]")
    g.addoption("--runner-bin", default=None, help="use this prebuilt runner instead of building one")
    g.addoption("--runner-timeout", type=float, default=_DEFAULTS.runner_timeout,
                help="seconds before the runner is killed on the device [600]")
    g.addoption("--results-db", default=None, help="results database: file path or SQLAlchemy URL "
                                                   "[results/results.db]")
    g.addoption("--report", default=None, help="folder for the HTML report [results/]")
    g.addoption("--run-label", default=None, help="label stored with the run")
    g.addoption("--baseline", default=None, help="compare with this run: a baseline name, a run label (its last "
                                                 "run) or a run id; significant regressions fail their cell")
    g.addoption("--gate", default=None, help="release-gate thresholds (TOML) [gate.toml at the repository root]")


def _cpus(value: str | None) -> tuple[int, ...] | None:
    try:
        return parse_cpus(value) if value else None
    except ValueError as e:
        raise pytest.UsageError(f"--cpus: {e}") from None


def settings_from(config: pytest.Config) -> Settings:
    """Validated settings; bad names raise pytest.UsageError listing the valid ones."""
    from device_runners.device import is_adb_name, known_devices
    from harness.artifacts import QUANTS
    from models.registry import FAMILIES
    from models.spec import SIZES

    opt = config.getoption
    devices = _csv(opt("--device"))
    models = opt("--models")
    # `-m full` alone means the full-size configs: their cells are the ones marked `full`.
    size = opt("--size") or ("full" if "full" in (config.option.markexpr or "") else _DEFAULTS.size)
    choices = {"--models": (_csv(models or ",".join(_DEFAULTS.models)), sorted(FAMILIES)),
               "--quant": (_csv(opt("--quant")), QUANTS),
               "--device": (devices, [*known_devices(), *filter(is_adb_name, devices)]),
               "--size": ((size,), SIZES)}
    for option, (given, valid) in choices.items():
        bad = [g for g in given if g not in valid]
        if bad or not given:
            raise pytest.UsageError(f"{option}: unknown {', '.join(map(repr, bad)) or 'empty value'}; "
                                    f"valid: {', '.join(valid)}")
    for option, minimum in (("--reps", 1), ("--warmup", 0), ("--bandwidth-probe-mb", 0), ("--cooldown", 0)):
        if opt(option) < minimum:
            raise pytest.UsageError(f"{option} must be >= {minimum}")
    depth = tuple(int(v) for v in _csv(opt("--depth"))) if opt("--depth").replace(",", "").isdigit() else None
    if not depth:
        raise pytest.UsageError(f"--depth takes comma-separated whole numbers >= 0, got {opt('--depth')!r}")
    ckpt = opt("--checkpoint-dir")
    if ckpt and not Path(ckpt).is_dir():
        raise pytest.UsageError(f"--checkpoint-dir {ckpt!r} is not a directory")
    runner_bin = opt("--runner-bin")
    if runner_bin and not Path(runner_bin).is_file():
        raise pytest.UsageError(f"--runner-bin {runner_bin!r} is not a file")
    root = config.rootpath
    results_db = opt("--results-db") or str(root / "results" / "results.db")
    return Settings(
        devices=choices["--device"][0], models=choices["--models"][0], quants=choices["--quant"][0],
        accuracy_models=choices["--models"][0] if models else tuple(FAMILIES),
        accuracy_thresholds=_accuracy_thresholds(opt("--accuracy-thresholds")), size=size,
        prefill=_ints("--prefill", opt("--prefill")), decode=_ints("--decode", opt("--decode")),
        threads=_ints("--threads", opt("--threads")), warmup=opt("--warmup"), reps=opt("--reps"), depth=depth,
        cpus=_cpus(opt("--cpus")), bandwidth_probe_mb=opt("--bandwidth-probe-mb"),
        cv_limit_pct=opt("--cv-limit"), cooldown_s=opt("--cooldown"),
        checkpoint_dir=Path(ckpt).resolve() if ckpt else None, seed=opt("--seed"),
        runner_bin=Path(runner_bin).resolve() if runner_bin else None, runner_timeout=opt("--runner-timeout"),
        results_db=results_db, report_dir=Path(opt("--report") or root / "results"), label=opt("--run-label"),
        baseline_run=_baseline_run(results_db, opt("--baseline")), gate=_gate_config(opt("--gate")),
    )


def _baseline_run(results_db: str, ref: str | None) -> int | None:
    """Resolved now, before this session's run exists: `--run-label nightly --baseline nightly` then means
    the previous nightly run, not this one."""
    if ref is None:
        return None
    from harness.store import Store

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
    from harness.drift import ThresholdsError, load_thresholds

    try:
        load_thresholds(path)  # now, so a bad file is a usage error before anything is converted
    except ThresholdsError as e:
        raise pytest.UsageError(f"--accuracy-thresholds: {e}") from None
    return Path(path).resolve() if path else None


def pytest_configure(config: pytest.Config) -> None:
    for line in ("performance: speed and memory cells (recorded; gated only by thresholds or a baseline)",
                 "accuracy: numerical checks against a reference", "conversion: checks of converted artifacts",
                 "full: full-size models (minutes and GiBs per cell)"):
        config.addinivalue_line("markers", line)
    config.stash[SETTINGS] = settings_from(config)


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


@pytest.fixture(scope="session")
def bench_session(request: pytest.FixtureRequest) -> BenchSession:
    config = request.config
    if SESSION not in config.stash:
        config.stash[SESSION] = BenchSession(config.stash[SETTINGS], argv=list(config.invocation_params.args))
    return config.stash[SESSION]


@pytest.fixture
def measure(bench_session: BenchSession):
    """measure(cell) → the cell's result dict, stored in the results database as soon as it is measured."""
    return bench_session.measure


@pytest.fixture
def gate(bench_session: BenchSession):
    """gate(result) judges a measured cell (the dict `measure` returned) against the thresholds file and the
    baseline run; a failing cell fails its test with the figures. Returns the verdict."""

    def check(result: dict) -> CellVerdict:
        verdict = bench_session.gate(result["result_id"])
        if not verdict.passed:
            pytest.fail(verdict.message(), pytrace=False)
        return verdict

    return check


def pytest_sessionfinish(session: pytest.Session) -> None:
    bench = session.config.stash.get(SESSION, None)
    if bench is not None:
        session.config.stash[_REPORTS] = bench.close()


_REPORTS = pytest.StashKey[list[Path]]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION, None)
    if bench is None or bench.run_id is None or hasattr(config, "workerinput"):  # xdist: the controller reports
        return
    from harness.gate_summary import publish
    from reports.table import format_accuracy, format_table

    terminalreporter.section(f"litert-bench run {bench.run_id}")
    results = bench.store.results_frame(bench.run_id)
    if len(results):
        terminalreporter.write_line(format_table(results))
    checks = bench.store.accuracy_frame(bench.run_id)
    if len(checks):
        terminalreporter.section("accuracy")
        terminalreporter.write_line(format_accuracy(checks))
    # From the store, not from the cells' tests: pytest-xdist workers judged theirs in other processes.
    settings = bench.settings
    if len(results):  # an accuracy-only run has no speed cells to gate
        verdicts = evaluate_run(bench.store, bench.run_id, settings.baseline_run, settings.gate)
        terminalreporter.section("release gate")
        terminalreporter.write_line(publish(verdicts, bench.run_id, settings.baseline_run, settings.gate.source))
    terminalreporter.write_line(f"results: {bench.store.url}")
    for path in config.stash.get(_REPORTS, []):
        terminalreporter.write_line(f"report:  {path}")


__all__ = ["Cell"]
