"""The command line of `python -m harness`: every subcommand's arguments. Options the suites share come from
the option registry (harness/common/options.py), with one value each where the suites take lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.common.options import OPTIONS, Option, OptionError, first_default


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-db", default="results/results.db", help="file path or SQLAlchemy URL")
    p.add_argument("--run", type=int, default=None, help="run id [the latest]")


def _add(p: argparse.ArgumentParser, *names: str, **override) -> None:
    """Options from the registry (harness/common/options.py), one value each where the suites take lists."""
    for name in names:
        option = OPTIONS[name]
        default = override.get(name, first_default(name))
        shown = f" [{option.format(default)}]" if default is not None else ""
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


def _at_least_zero(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"takes a number >= 0, got {text!r}")
        return value
    return parse


def _runner_targets() -> tuple[str, ...]:
    from device_runners.runners.native import TARGETS

    return TARGETS


def parser(description: str) -> argparse.ArgumentParser:
    from device_runners.device import known_devices
    from reports.printers import PRINTERS

    ap = argparse.ArgumentParser(prog="python -m harness", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    _model_commands(sub)
    _explore_command(sub)
    _device_commands(sub, known_devices())
    _profile_command(sub, known_devices())
    _results_commands(sub, list(PRINTERS))
    return ap


def _model_commands(sub) -> None:
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


def _explore_command(sub) -> None:
    x = sub.add_parser("explore", help="Model Explorer on the authored model (torch.export) and its .tflite, side by "
                                       "side; with --page, write the artifact's graph page instead (no server)")
    x.add_argument("--model", required=True, help="model family (see `models/registry.py`)")
    x.add_argument("--size", default="tiny", help="tiny | full [tiny]")
    x.add_argument("--quant", default="dynamic_int8", help="quantization recipe [dynamic_int8]")
    _add_lengths(x, 128)
    x.add_argument("--kv-len", type=int, default=None, help="KV cache length [prefill+decode, rounded up to 128]")
    x.add_argument("--checkpoint-dir", type=Path, default=None, help="local HF safetensors checkpoint")
    _add(x, "seed")
    x.add_argument("--host", default="127.0.0.1", help="address the server listens on [127.0.0.1]")
    x.add_argument("--port", type=int, default=8080,
                   help="port; 8080 takes the first free one of 8080-8099, any other must be free [8080]")
    x.add_argument("--no-browser", action="store_true", help="do not open the web app in a browser")
    x.add_argument("--page", type=Path, default=None, metavar="OUT.html",
                   help="write the graph page (each signature's ops, the authored ops, what conversion fused) "
                        "and exit")


def _device_commands(sub, devices: list[str]) -> None:
    b = sub.add_parser("bench", help="run the native runner on an artifact and print its figures")
    b.add_argument("artifact", type=Path)
    b.add_argument("--device", default="host", help=f"one of: {', '.join(devices)} [host]")
    _add_lengths(b, None)
    _add(b, "threads", "depth", "cpus", "bandwidth_probe_mb", "reps", "warmup", "runner_timeout", "weight_cache",
         "energy", "energy_idle")
    b.add_argument("--timeout", dest="runner_timeout", type=_one(OPTIONS["runner_timeout"]),
                   default=argparse.SUPPRESS, help="the same as --runner-timeout")
    b.add_argument("--runner-bin", type=Path, default=None, help="a prebuilt runner binary")
    b.add_argument("--runner-app", type=Path, default=None,
                   help="the iOS runner app (.ipa), installed when the device lacks it or has another build")
    b.add_argument("--json", action="store_true", help="print JSON (medians, samples, spread, device facts)")

    br = sub.add_parser("build-runner", help="build the native runner for a target (cached); print the binary's path")
    br.add_argument("--target", default="host", choices=_runner_targets(), help="runner build target [host]")

    d = sub.add_parser("devices", help="list the host, the SSH boards with an address in devices.toml, the "
                                       "attached iPhones and iPads and the attached adb devices, with what they "
                                       "report")
    d.add_argument("--clean", action="store_true",
                   help="on every attached adb and iOS device: kill runners of sessions that are gone and remove their "
                        "working folders (run-*) and cut-off pushes (.part)")
    trim = d.add_mutually_exclusive_group()
    trim.add_argument("--keep", type=_at_least_zero(int), metavar="N",
                      help="with --clean: keep only the N most recently staged folders of the device's file cache")
    trim.add_argument("--older-than", type=_at_least_zero(float), metavar="DAYS",
                      help="with --clean: remove the cache folders not staged for DAYS days")



def _profile_command(sub, devices: list[str]) -> None:
    p = sub.add_parser("profile", help="where the time goes: the native runner with its profiler on, per phase "
                                       "(prefill, one decode step) time per op type, top ops, XNNPACK's share")
    p.add_argument("artifact", type=Path)
    p.add_argument("--device", default="host", help=f"one of: {', '.join(devices)} [host]")
    _add_lengths(p, None)
    # One measured repetition: the profile is the repetition after it, on an engine of its own.
    _add(p, "threads", "cpus", "runner_timeout", "reps", "warmup", reps=1)
    p.add_argument("--api", default=None, choices=("compiled_model", "interpreter"),
                   help="the runner's engine [the runner's default: compiled_model; interpreter on iOS]")
    p.add_argument("--top", type=int, default=10, help="rows in the top list per phase [10]")
    p.add_argument("--runner-bin", type=Path, default=None, help="a prebuilt runner binary")
    p.add_argument("--runner-app", type=Path, default=None,
                   help="the iOS runner app (.ipa), installed when the device lacks it or has another build")
    p.add_argument("--json", action="store_true", help="print the runner's profile as JSON")


def _results_commands(sub, formats: list[str]) -> None:
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

    e = sub.add_parser("export", help="print stored results as CSV, JSON or Markdown (one schema), or as "
                                      "pytest-benchmark's JSON document")
    _add_store(e)
    e.add_argument("--all", action="store_true", help="every run, not just one")
    e.add_argument("--format", default="csv", choices=formats, help="output format [csv]")
    e.add_argument("--out", type=Path, default=None, help="write here instead of stdout")

    s = sub.add_parser("store", help="the results database: import spilled cells")
    store_sub = s.add_subparsers(dest="store_command", required=True)
    i = store_sub.add_parser("import", help="store the cells a session could not (saved in spill files)")
    i.add_argument("--results-db", default="results/results.db", help="file path or SQLAlchemy URL")
    i.add_argument("files", nargs="*", type=Path, help="spill files [every one waiting for this database]")
