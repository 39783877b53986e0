"""`python -m harness` / `litert-bench`: the same code paths as the suites, for scripts and CI.

  convert  --model tinyllama --size tiny --quant dynamic_int8      → prints the artifact path
  bench    ARTIFACT --device host --prefill 128 --decode 64 --json → prints the measured figures
  report   --results-db results/results.db --out results/           → writes the HTML report of a run
  devices                                                           → lists the known devices and their facts
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


class CliError(Exception):
    """A one-line error for the user; exit code 1."""


def _add_lengths(p: argparse.ArgumentParser, prefill_default: int | None) -> None:
    p.add_argument("--prefill", type=int, default=prefill_default, help="prefill length (tokens)")
    p.add_argument("--decode", type=int, default=64, help="decode length (tokens) [64]")


def parser() -> argparse.ArgumentParser:
    from device_runners.device import known_devices
    from harness.artifacts import QUANTS

    ap = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a model to a prefill+decode .tflite (cached)")
    c.add_argument("--model", required=True, help="model family (see `models/registry.py`)")
    c.add_argument("--size", default="tiny", help="tiny | full [tiny]")
    c.add_argument("--quant", default="dynamic_int8", help=f"one of: {', '.join(QUANTS)} [dynamic_int8]")
    _add_lengths(c, 128)
    c.add_argument("--kv-len", type=int, default=None, help="KV cache length [prefill+decode, rounded up to 128]")
    c.add_argument("--checkpoint-dir", type=Path, default=None, help="local HF safetensors checkpoint")
    c.add_argument("--seed", type=int, default=1234, help="seed of the random weights [1234]")

    b = sub.add_parser("bench", help="run the native runner on an artifact and print its figures")
    b.add_argument("artifact", type=Path)
    b.add_argument("--device", default="host", help=f"one of: {', '.join(known_devices())} [host]")
    _add_lengths(b, None)
    b.add_argument("--threads", type=int, default=4, help="threads (at most the device's cores) [4]")
    b.add_argument("--depth", type=int, default=0, help="KV positions filled before the timed decode [0]")
    b.add_argument("--cpus", default=None, help="pin to these cores (e.g. 4-7) instead of the fastest")
    b.add_argument("--bandwidth-probe-mb", type=int, default=1024, help="bandwidth probe size; 0: none [1024]")
    b.add_argument("--reps", type=int, default=5, help="measured repetitions [5]")
    b.add_argument("--warmup", type=int, default=1, help="discarded warmup repetitions [1]")
    b.add_argument("--runner-bin", type=Path, default=None, help="a prebuilt runner binary")
    b.add_argument("--timeout", type=float, default=600.0, help="device-side timeout, seconds [600]")
    b.add_argument("--json", action="store_true", help="print JSON (medians, samples, spread, device facts)")

    r = sub.add_parser("report", help="write the HTML report of a stored run")
    r.add_argument("--results-db", default="results/results.db", help="file path or SQLAlchemy URL")
    r.add_argument("--run", type=int, default=None, help="run id [the latest]")
    r.add_argument("--out", type=Path, default=Path("results"), help="output folder [results/]")

    sub.add_parser("devices", help="list the known devices and what they report")
    return ap


def cmd_convert(args: argparse.Namespace) -> None:
    from harness.artifacts import Recipe, ensure_artifact, kv_len_for
    from models.registry import get_spec

    spec = get_spec(args.model, args.size, args.checkpoint_dir, args.seed)
    recipe = Recipe(args.quant, args.prefill, args.kv_len or kv_len_for(args.prefill, args.decode))
    print(ensure_artifact(spec, recipe).path)


def cmd_bench(args: argparse.Namespace) -> None:
    from device_runners.build import build_runner, prebuilt_runner
    from device_runners.device import open_device
    from harness.measure import RunnerError, Workload, bench
    from harness.session import parse_cpus
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
        cpus = parse_cpus(args.cpus) if args.cpus else None
        workload = Workload(prefill, args.decode, args.threads, args.warmup, args.reps, args.depth, cpus,
                            args.bandwidth_probe_mb)
        result = bench(device, runner, model, workload, args.timeout, meta.get("compute"))
    except RunnerError as e:
        # The runner's exit code 3 means it could not load the model: its own line names the file.
        raise CliError(e.load_error or str(e)) from None
    result["samples"] = result["runner"]["samples"]
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    import pandas as pd

    row = {"model": model.name, "quant": "", "device": device.name, "prefill_len": prefill,
           "decode_len": args.decode, "threads": result["threads"], "status": "ok",
           "decode_cv_pct": result["spread"]["decode_tok_s"]["cv_pct"],
           **{k: result[k] for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "init_ms", "peak_rss_mb")}}
    print(format_table(pd.DataFrame([row])))


def _meta(model: Path) -> dict:
    """The harness's meta.json beside an artifact it converted (lengths, FLOP counts), else {}."""
    meta = model.with_name("meta.json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def cmd_report(args: argparse.Namespace) -> None:
    from harness.store import Store
    from reports.render import render_run_report

    store = Store(args.results_db)
    runs = store.runs_frame()
    if runs.empty:
        raise CliError(f"no runs in {store.url}")
    run_id = args.run if args.run is not None else int(runs["id"].max())
    if run_id not in set(runs["id"]):
        raise CliError(f"no run {run_id} in {store.url}; runs: {', '.join(map(str, runs['id']))}")
    print(render_run_report(store, run_id, args.out / f"run-{run_id}.html"))


def cmd_devices(args: argparse.Namespace) -> None:
    from device_runners.device import known_devices, open_device

    for name in known_devices():
        print(json.dumps({"device": name, **dataclasses.asdict(open_device(name).facts)}))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {"convert": cmd_convert, "bench": cmd_bench, "report": cmd_report, "devices": cmd_devices}
    try:
        commands[args.command](args)
    except ValueError as e:  # unknown names and bad values: a usage error that lists the valid ones
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
