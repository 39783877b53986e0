"""`python -m harness` / `litert-bench`: the same code paths as the suites, for scripts and CI.

  convert  --model tinyllama --size tiny --quant dynamic_int8      → prints the artifact path
  bench    ARTIFACT --device host --prefill 128 --decode 64 --json → prints the measured figures
  profile  ARTIFACT --device host [--threads N --prefill N --decode N --api interpreter]
                                                → where the time goes: per phase (prefill, one decode step) time
                                                  per op type, the top ops, the XNNPACK delegate's share
  report   --results-db results/results.db --out results/ [--baseline REF]
                                                → the comparison report of a run and the regression dashboard
  gate     --results-db URL --run ID --baseline REF [--thresholds gate.toml] [--update-baseline NAME]
                                                → the release gate: exit 1 on a failing cell or a regression
  export   --results-db URL [--run ID | --all] --format csv|json|md|pytest-benchmark
                                                → the results in one schema, or as a pytest-benchmark JSON
                                                  document (`pytest-benchmark compare A.json B.json`)
  store import --results-db URL [SPILL.json ...]
                                                → cells that could not be stored (spilled beside the database)
  build-runner --target host|linux-arm64|android-arm64            → builds the native runner (cached); prints
                                                  the binary's path (ios-arm64 is an app built with Xcode)
  devices                                                           → the host, SSH boards, every attached iPhone
                                                  or iPad (usbmuxd) and every attached adb device
  devices  --clean [--keep N | --older-than DAYS]
                                                → on every attached adb and iOS device: stop and remove what dead
                                                  sessions left, and trim the pushed-file cache
  bundle   --model NAME --quant Q --format litertlm,task --out DIR  → .litertlm / .task with a SentencePiece
                                                  tokenizer trained offline; prints their contents as JSON
  verify   --model NAME --size tiny [--checkpoint-dir DIR] [--checks reauthoring,conversion,drift]
                                                → accuracy figures as JSON; exit 1 when a bound is broken
  explore  --model NAME --quant Q [--size tiny] [--port P] [--no-browser]
                                                → Model Explorer's web app on the authored model (torch.export)
                                                  and its .tflite, side by side, until Ctrl-C
  explore  --model NAME --quant Q --page OUT.html
                                                → the artifact's graph page: each signature's ops, the authored
                                                  ops, what conversion fused (no server)

REF names a run: a baseline name (set by gate --update-baseline), a run label (its latest run) or a run id.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from harness.cli.args import parser
from harness.common.signals import interrupt_on_termination

# Each command imports the stages it uses inside its function: models/ and harness/artifacts/ load torch,
# litert-torch and TensorFlow (seconds), reports/ loads matplotlib, and `harness gate` or `export` need none.

EXIT_USAGE = 2


class CliError(Exception):
    """A one-line error for the user; exit code 1."""


def cmd_build_runner(args: argparse.Namespace) -> None:
    from device_runners.runners.native import build_runner

    print(build_runner(args.target).binary)


def cmd_convert(args: argparse.Namespace) -> None:
    from harness.artifacts.cache import ensure_artifact
    from harness.artifacts.recipe import Recipe, kv_len_for
    from models.registry import get_spec

    spec = get_spec(args.model, args.size, args.checkpoint_dir, args.seed)
    recipe = Recipe(args.quant, args.prefill, args.kv_len or kv_len_for(args.prefill, args.decode))
    print(ensure_artifact(spec, recipe).path)


def cmd_bench(args: argparse.Namespace) -> None:
    from harness.measure.bench import Workload
    from harness.measure.metrics import CellResult
    from reports.table import format_table

    device, model, prefill, measured = _measure_file(args, lambda prefill: Workload(
        prefill, args.decode, args.threads, args.warmup, args.reps, args.depth, args.cpus, args.bandwidth_probe_mb,
        weight_cache=args.weight_cache, energy=args.energy, energy_idle_s=args.energy_idle))
    if args.json:
        json.dump(measured.to_json(), sys.stdout, indent=2)
        print()
        return
    import pandas as pd

    row = CellResult(model=model.name, quant="", device=device.name, prefill_len=prefill, decode_len=args.decode,
                     status="ok", **measured.figures())
    print(format_table(pd.DataFrame([row.row()])))


def cmd_profile(args: argparse.Namespace) -> None:
    from harness.measure import profile
    from harness.measure.bench import Workload

    # No bandwidth probe and no weight cache: neither changes where a repetition's time goes; both cost seconds.
    device, model, _, measured = _measure_file(args, lambda prefill: Workload(
        prefill, args.decode, args.threads, args.warmup, args.reps, cpus=args.cpus, bandwidth_probe_mb=0,
        weight_cache=False, profile=True, api=args.api))
    report = measured.report
    if report.profile is None:
        raise CliError(f"the runner on {device.name} printed no profile")
    if args.json:
        json.dump(dataclasses.asdict(report.profile), sys.stdout, indent=2)
        print()
        return
    print(f"{model.name} on {device.name}: {report.api}, {measured.threads} threads, prefill {report.prefill_len}, "
          f"decode step {report.decode_len} of {report.decode_len}; profiler: {report.profile.profiler}")
    prefill_us = 1e6 * report.prefill_len / measured.median("prefill_tok_s")
    print(f"measured without the profiler (median of {len(report.samples)}): prefill {prefill_us:,.0f} µs, "
          f"decode step {1e6 / measured.median('decode_tok_s'):,.0f} µs")
    for summary in profile.summarize(report.profile, args.top).values():
        print()
        print(profile.format_phase(summary))
        print()
        print(profile.format_top(summary))


def _measure_file(args: argparse.Namespace, workload_for):
    """`bench` and `profile` on a model file: the device, the file, its prefill length (--prefill, else its
    meta.json) and the measurement of workload_for(prefill), the suites' way (the device's lock, then the run;
    closing the bench stops what still runs and cleans up)."""
    from device_runners.device import open_device
    from device_runners.runners.native import runner_for_target
    from harness.measure.bench import RunnerError
    from harness.measure.device_bench import DeviceBench

    device = open_device(args.device)
    model = args.artifact
    if not model.is_file():
        raise CliError(f"model file '{model}' does not exist")
    meta = _meta(model)
    prefill = args.prefill or meta.get("prefill_len")
    if not prefill:
        raise CliError(f"--prefill is needed for '{model}': no meta.json beside it (not converted by the harness)")
    runner = runner_for_target(device.profile.runner_target, args.runner_bin, args.runner_app)
    device_bench = DeviceBench(device, runner, timeout=args.runner_timeout, cooldown_s=0)
    try:
        measured = device_bench.measure(model, workload_for(prefill), meta.get("compute"))
    except RunnerError as e:
        # The runner's exit code 3 means it could not load the model: its own line names the file.
        raise CliError(e.load_error or str(e)) from None
    finally:
        device_bench.close()
    return device, model, prefill, measured


def _meta(model: Path) -> dict:
    """The harness's meta.json beside an artifact it converted (lengths, FLOP counts), else {}."""
    meta = model.with_name("meta.json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _open(args: argparse.Namespace):
    """The store, the run to work on (the latest unless --run) and the baseline run (None without --baseline)."""
    from harness.store.store import Store

    store = Store(args.results_db, must_exist=True)  # reading a mistyped path must not create an empty database
    try:
        run_id = store.resolve_run(args.run) if args.run is not None else store.latest_run()
        baseline = store.resolve_run(args.baseline) if getattr(args, "baseline", None) else None
    except LookupError as e:
        raise ValueError(str(e)) from None  # a usage error: the message lists the runs there are
    return store, run_id, baseline


def cmd_report(args: argparse.Namespace) -> None:
    from harness.gate.config import config_from
    from reports.render import render_dashboard, render_run_report

    store, run_id, baseline = _open(args)
    config = config_from(args.thresholds)
    print(render_run_report(store, run_id, args.out / f"run-{run_id}.html", baseline, config))
    print(render_dashboard(store, args.out / "dashboard.html", config))


def cmd_gate(args: argparse.Namespace) -> int:
    from harness.gate.config import config_from
    from harness.gate.verdicts import accuracy_verdicts, run_verdicts
    from reports.gate_summary import publish

    store, run_id, baseline = _open(args)
    config = config_from(args.thresholds)
    verdicts = run_verdicts(store, run_id, baseline, config) + accuracy_verdicts(store, run_id, baseline, config)
    if not verdicts:
        raise CliError(f"run {run_id} has no results or accuracy checks to judge")
    print(publish(verdicts, run_id, baseline, config.source))
    failed = [v for v in verdicts if not v.passed]
    for v in failed:
        print(v.message(), file=sys.stderr)
    if failed:
        return 1
    if args.update_baseline:
        store.set_baseline(args.update_baseline, run_id)
        print(f"baseline {args.update_baseline!r} is now run {run_id}")
    return 0


def cmd_export(args: argparse.Namespace) -> None:
    from reports.printers import export

    store, run_id, _ = _open(args)
    frame = store.results_frame(None if args.all else run_id)
    checks = store.accuracy_frame(None if args.all else run_id)
    notes: list[str] = []
    if args.out is None:
        try:
            notes = export(frame, args.format, sys.stdout, checks)
        except BrokenPipeError:  # `export ... | head` stopped reading: fine, but no traceback at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        try:
            f = open(args.out, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below; only open's errors
        except OSError as e:  # a folder that is a file, or missing, or not writable
            raise CliError(f"cannot write {args.out}: {e.strerror or e}") from None
        with f:
            notes = export(frame, args.format, f, checks)
    for note in notes:  # rows a format left out (pytest-benchmark: failed and emulated cells)
        print(note, file=sys.stderr)


def cmd_store(args: argparse.Namespace) -> int:
    """`store import`: spilled cells into the database; exit 1 when a file could not be imported."""
    from harness.store.store import Store

    store = Store(args.results_db, must_exist=True)
    imported, problems = store.import_spilled(args.files or None)
    for path in imported:
        print(f"imported {path}")
    print(f"{len(imported)} spilled rows imported into {store.url}"
          + ("" if args.files or imported else f" (none waiting in {store.spill_dir})"))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_devices(args: argparse.Namespace) -> None:
    from device_runners.device import attached_devices, attached_ios_devices, configured_boards, open_device

    if args.clean:
        _clean_devices(args.keep, args.older_than)
        return
    if args.keep is not None or args.older_than is not None:
        raise ValueError("--keep and --older-than trim the device cache: they go with --clean")
    print(json.dumps({"device": "host", **dataclasses.asdict(open_device("host").facts)}))
    for row in configured_boards():  # boards over SSH whose profiles carry an address: those that answer, and why not
        print(json.dumps(row), flush=True)
    for row in attached_ios_devices():  # through usbmuxd: model, iOS version, profile, free storage
        print(json.dumps(row), flush=True)
    for row in attached_devices():  # through the adb server: model, ABI, CPU clusters, free storage
        print(json.dumps(row))


def _clean_devices(keep: int | None, older_than_days: float | None) -> None:
    """One JSON line per attached iOS and adb device: what was removed from it. Each device is cleaned under its
    lock, so no session of this machine stages or runs there meanwhile."""
    from device_runners.transports.adb import AdbAddress, AdbTransport, attached
    from harness.measure.device_lock import device_lock

    for row in _clean_ios_devices(keep, older_than_days):
        print(json.dumps(row), flush=True)
    for info in attached():
        row: dict = {"device": f"adb:{info.serial}", "state": info.state}
        if info.state == "device":
            transport = AdbTransport(row["device"], AdbAddress(info.serial))
            with device_lock(transport.identity):
                row["removed"] = transport.clean(keep, older_than_days)
        print(json.dumps(row), flush=True)


def _clean_ios_devices(keep: int | None, older_than_days: float | None) -> list[dict]:
    """The same on every iPhone or iPad usbmuxd lists (none where there is no usbmuxd)."""
    from device_runners.device import attached_ios_devices
    from device_runners.transports.ios import IosTransport
    from device_runners.transports.ios_support import IosDeviceError
    from harness.measure.device_lock import device_lock

    rows = []
    for info in attached_ios_devices():
        row: dict = {"device": info["device"], "state": info["state"]}
        if info["state"] == "device":
            try:
                transport = IosTransport(row["device"], row["device"].removeprefix("ios:"))
                try:
                    with device_lock(transport.identity):
                        row["removed"] = transport.clean(keep, older_than_days)
                finally:
                    transport.close()
            except IosDeviceError as e:  # no runner app there, no developer image: the other devices go on
                row["error"] = str(e)
        rows.append(row)
    return rows


def cmd_bundle(args: argparse.Namespace) -> None:
    from harness.artifacts import bundle, tokenizer
    from harness.artifacts.cache import ensure_artifact
    from harness.artifacts.recipe import Recipe, kv_len_for
    from models.registry import get_spec

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or set(formats) - {"litertlm", "task"}:
        raise ValueError(f"--format: {args.format!r}; valid: litertlm, task (comma-separated)")
    spec = get_spec(args.model, args.size)
    # LiteRT-LM's engine reads the context length from the KV cache's third dimension: the transposed layout.
    recipe = Recipe(args.quant, args.prefill, kv_len_for(args.prefill, args.decode), kv_layout="transposed")
    artifact = ensure_artifact(spec, recipe)
    tok = tokenizer.ensure_tokenizer(tokenizer.TokenizerSpec(vocab_size=spec.config().vocab_size))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{spec.name}-{args.quant}"
    build = {"litertlm": bundle.build_litertlm, "task": bundle.build_task}
    for fmt in formats:
        path = build[fmt](artifact, tok, stem.with_suffix(f".{fmt}"))
        print(json.dumps({"bundle": str(path), "contents": bundle.bundle_contents(path)}, default=str))


def cmd_explore(args: argparse.Namespace) -> None:
    from harness.artifacts.cache import ensure_artifact
    from harness.artifacts.recipe import Recipe, kv_len_for
    from models.registry import get_spec

    spec = get_spec(args.model, args.size, args.checkpoint_dir, args.seed)
    recipe = Recipe(args.quant, args.prefill, args.kv_len or kv_len_for(args.prefill, args.decode))
    artifact = ensure_artifact(spec, recipe)
    if args.page is not None:
        from reports.graph import render_graph_page

        print(render_graph_page(spec, artifact, args.page))
        return
    from harness.artifacts.graph import explore

    explore(spec, artifact, host=args.host, port=args.port, open_browser=not args.no_browser)


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.accuracy.registry import CHECKS, run_checks
    from models.registry import get_spec

    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise ValueError(f"--checks: unknown {', '.join(map(repr, unknown)) or 'empty value'}; "
                         f"valid: {', '.join(CHECKS)}")
    spec = get_spec(args.model, args.size, args.checkpoint_dir.resolve() if args.checkpoint_dir else None)
    quants = [q.strip() for q in args.quant.split(",")] if args.quant else None
    results = run_checks(spec, checks, quants, args.thresholds)
    passed = all(r["passed"] for r in results)
    json.dump({"model": spec.name, "passed": passed, "checks": results}, sys.stdout, indent=2, default=str)
    print()
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    commands = {"convert": cmd_convert, "bench": cmd_bench, "report": cmd_report, "gate": cmd_gate,
                "export": cmd_export, "store": cmd_store, "devices": cmd_devices, "verify": cmd_verify,
                "bundle": cmd_bundle, "build-runner": cmd_build_runner, "explore": cmd_explore,
                "profile": cmd_profile}
    # SIGTERM/SIGHUP unwind like Ctrl-C, so `bench` stops its runner on the device and cleans up (finally).
    interrupt_on_termination()
    try:
        return commands[args.command](args) or 0
    except KeyboardInterrupt as e:
        print(f"error: interrupted{f' ({e})' if str(e) else ''}; what ran on the device was stopped", file=sys.stderr)
        return 130
    except ValueError as e:  # unknown names and bad values: a usage error that lists the valid ones
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
