"""`python -m harness` / `litert-bench`: the same code paths as the suites, for scripts and CI.

  convert  --model tinyllama --size tiny --quant dynamic_int8      → prints the artifact path
  bench    ARTIFACT --device host --prefill 128 --decode 64 --json → prints the measured figures
  report   --results-db results/results.db --out results/ [--baseline REF]
                                                → the comparison report of a run and the regression dashboard
  gate     --results-db URL --run ID --baseline REF [--thresholds gate.toml] [--update-baseline NAME]
                                                → the release gate: exit 1 on a failing cell or a regression
  export   --results-db URL [--run ID | --all] --format csv|json|md → the results in one schema
  devices                                                           → the host and every attached adb device
  bundle   --model NAME --quant Q --format litertlm,task --out DIR  → .litertlm / .task with a SentencePiece
                                                  tokenizer trained offline; prints their contents as JSON
  verify   --model NAME --size tiny [--checkpoint-dir DIR] [--checks reauthoring,conversion,drift]
                                                → accuracy figures as JSON; exit 1 when a bound is broken

REF names a run: a baseline name (set by gate --update-baseline), a run label (its latest run) or a run id.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from harness.common.options import OPTIONS, Option, OptionError, first_default

EXIT_USAGE = 2


class CliError(Exception):
    """A one-line error for the user; exit code 1."""


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-db", default="results/results.db", help="file path or SQLAlchemy URL")
    p.add_argument("--run", type=int, default=None, help="run id [the latest]")


def _add(p: argparse.ArgumentParser, *names: str, **override) -> None:
    """Options from the registry (harness/common/options.py), one value each where the suites take lists."""
    for name in names:
        option = OPTIONS[name]
        default = override.get(name, first_default(name))
        shown = f" [{default}]" if default is not None else ""
        p.add_argument(option.flag, type=_one(option), default=default, help=option.help.split(";")[0] + shown)


def _one(option: Option):
    """argparse type: the option's parser; where the suites take a list, the CLI takes exactly one value."""
    def parse(text: str):
        try:
            value = option.parse(text)
        except OptionError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if isinstance(value, tuple) and option.kind != "cpus":
            if len(value) != 1:
                raise argparse.ArgumentTypeError(f"{option.flag} takes one value here, got {text!r}")
            return value[0]
        return value
    return parse


def _add_lengths(p: argparse.ArgumentParser, prefill_default: int | None) -> None:
    _add(p, "prefill", "decode", prefill=prefill_default)


def parser() -> argparse.ArgumentParser:
    from device_runners.device import known_devices
    from reports.printers import PRINTERS

    ap = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a model to a prefill+decode .tflite (cached)")
    c.add_argument("--model", required=True, help="model family (see `models/registry.py`)")
    c.add_argument("--size", default="tiny", help="tiny | full [tiny]")
    # Not listed here: importing the recipes imports litert-torch and TensorFlow (seconds) for every command.
    c.add_argument("--quant", default="dynamic_int8", help="quantization recipe; a wrong one lists the valid "
                                                           "ones [dynamic_int8]")
    _add_lengths(c, 128)
    c.add_argument("--kv-len", type=int, default=None, help="KV cache length [prefill+decode, rounded up to 128]")
    c.add_argument("--checkpoint-dir", type=Path, default=None, help="local HF safetensors checkpoint")
    _add(c, "seed")

    b = sub.add_parser("bench", help="run the native runner on an artifact and print its figures")
    b.add_argument("artifact", type=Path)
    b.add_argument("--device", default="host", help=f"one of: {', '.join(known_devices())} [host]")
    _add_lengths(b, None)
    _add(b, "threads", "depth", "cpus", "bandwidth_probe_mb", "reps", "warmup", "runner_timeout")
    b.add_argument("--timeout", dest="runner_timeout", type=_one(OPTIONS["runner_timeout"]),
                   default=argparse.SUPPRESS, help="the same as --runner-timeout")
    b.add_argument("--runner-bin", type=Path, default=None, help="a prebuilt runner binary")
    b.add_argument("--json", action="store_true", help="print JSON (medians, samples, spread, device facts)")

    r = sub.add_parser("report", help="write the comparison report of a run and the regression dashboard")
    _add_store(r)
    r.add_argument("--baseline", default=None, help="compare with this run: baseline name, label or run id")
    r.add_argument("--thresholds", type=Path, default=None, help="gate thresholds (TOML) [the repository's gate.toml]")
    r.add_argument("--out", type=Path, default=Path("results"), help="output folder [results/]")

    g = sub.add_parser("gate", help="judge a run against the thresholds and a baseline; exit 1 when it fails")
    _add_store(g)
    g.add_argument("--baseline", default=None, help="compare with this run: baseline name, label or run id")
    g.add_argument("--thresholds", type=Path, default=None, help="gate thresholds (TOML) [the repository's gate.toml]")
    g.add_argument("--update-baseline", metavar="NAME", default=None,
                   help="when the run passes, record it as baseline NAME")

    e = sub.add_parser("export", help="print stored results as CSV, JSON or Markdown (one schema)")
    _add_store(e)
    e.add_argument("--all", action="store_true", help="every run, not just one")
    e.add_argument("--format", default="csv", choices=list(PRINTERS), help="output format [csv]")
    e.add_argument("--out", type=Path, default=None, help="write here instead of stdout")

    sub.add_parser("devices", help="list the host and the attached adb devices with what they report")

    u = sub.add_parser("bundle", help="pack a converted model and a tokenizer as .litertlm and/or MediaPipe .task")
    u.add_argument("--model", required=True, help="model family (see `models/registry.py`)")
    u.add_argument("--size", default="tiny", help="tiny | full [tiny]")
    u.add_argument("--quant", default="dynamic_int8", help="quantization recipe [dynamic_int8]")
    _add_lengths(u, 32)
    u.add_argument("--format", default="litertlm,task", help="litertlm, task or both [both]")
    u.add_argument("--out", type=Path, default=Path("results/bundles"), help="output folder [results/bundles]")

    v = sub.add_parser("verify", help="accuracy checks of a model: vs transformers, vs its .tflite, quant drift")
    v.add_argument("--model", required=True, help="model family (see `models/registry.py`)")
    v.add_argument("--size", default="tiny", help="tiny | full [tiny]")
    v.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="local HF checkpoint to verify [a transformers reference with its own random weights]")
    v.add_argument("--checks", default="reauthoring,conversion,drift", help="comma-separated [all three]")
    v.add_argument("--quant", default=None, help="drift recipes, comma-separated [every quantized recipe]")
    v.add_argument("--thresholds", type=Path, default=None, help="drift thresholds (TOML) [accuracy.toml]")
    return ap


def cmd_convert(args: argparse.Namespace) -> None:
    from harness.artifacts.cache import Recipe, ensure_artifact, kv_len_for
    from models.registry import get_spec

    spec = get_spec(args.model, args.size, args.checkpoint_dir, args.seed)
    recipe = Recipe(args.quant, args.prefill, args.kv_len or kv_len_for(args.prefill, args.decode))
    print(ensure_artifact(spec, recipe).path)


def cmd_bench(args: argparse.Namespace) -> None:
    from device_runners.device import open_device
    from device_runners.runners.native import build_runner, prebuilt_runner
    from harness.measure.bench import RunnerError, Workload, bench
    from harness.measure.metrics import CellResult
    from reports.table import format_table

    device = open_device(args.device)
    model = args.artifact
    if not model.is_file():
        raise CliError(f"model file '{model}' does not exist")
    meta = _meta(model)
    prefill = args.prefill or meta.get("prefill_len")
    if not prefill:
        raise CliError(f"--prefill is needed for '{model}': no meta.json beside it (not converted by the harness)")
    runner = prebuilt_runner(args.runner_bin, device.profile.runner_target) if args.runner_bin \
        else build_runner(device.profile.runner_target)
    try:
        workload = Workload(prefill, args.decode, args.threads, args.warmup, args.reps, args.depth, args.cpus,
                            args.bandwidth_probe_mb)
        measured = bench(device, runner, model, workload, args.runner_timeout, meta.get("compute"))
    except RunnerError as e:
        # The runner's exit code 3 means it could not load the model: its own line names the file.
        raise CliError(e.load_error or str(e)) from None
    if args.json:
        json.dump(measured.to_json(), sys.stdout, indent=2)
        print()
        return
    import pandas as pd

    row = CellResult(model=model.name, quant="", device=device.name, prefill_len=prefill, decode_len=args.decode,
                     status="ok", **measured.figures())
    print(format_table(pd.DataFrame([row.row()])))


def _meta(model: Path) -> dict:
    """The harness's meta.json beside an artifact it converted (lengths, FLOP counts), else {}."""
    meta = model.with_name("meta.json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _open(args: argparse.Namespace):
    """The store, the run to work on (the latest unless --run) and the baseline run (None without --baseline)."""
    from harness.store.store import Store

    store = Store(args.results_db)
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
    from harness.gate.verdicts import run_verdicts
    from reports.gate_summary import publish

    store, run_id, baseline = _open(args)
    config = config_from(args.thresholds)
    verdicts = run_verdicts(store, run_id, baseline, config)
    if not verdicts:
        raise CliError(f"run {run_id} has no results to judge")
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
    if args.out is None:
        try:
            export(frame, args.format, sys.stdout)
        except BrokenPipeError:  # `export ... | head` stopped reading: fine, but no traceback at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        export(frame, args.format, f)


def cmd_devices(args: argparse.Namespace) -> None:
    from device_runners.device import attached_devices, open_device

    print(json.dumps({"device": "host", **dataclasses.asdict(open_device("host").facts)}))
    for row in attached_devices():  # through the adb server: model, ABI, CPU clusters, free storage
        print(json.dumps(row))


def cmd_bundle(args: argparse.Namespace) -> None:
    from harness.artifacts import bundle, tokenizer
    from harness.artifacts.cache import Recipe, ensure_artifact, kv_len_for
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
    args = parser().parse_args(argv)
    commands = {"convert": cmd_convert, "bench": cmd_bench, "report": cmd_report, "gate": cmd_gate,
                "export": cmd_export, "devices": cmd_devices, "verify": cmd_verify,
                "bundle": cmd_bundle}
    try:
        return commands[args.command](args) or 0
    except ValueError as e:  # unknown names and bad values: a usage error that lists the valid ones
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
