"""An HF checkpoint folder → a GGUF file for llama.cpp, cached by content: llama.cpp measured on our weights.

The folder is one `transformers` can load (config.json + *.safetensors): the user's checkpoint, or our seeded
random weights under HF names (models/hf_export.py), i.e. exactly the weights our LiteRT conversion reads. It is
converted once by llama.cpp's own `convert_hf_to_gguf.py` to an F32 GGUF (the checkpoint's values as they are),
and every type is made from that file by `llama-quantize --pure`: F16 is our float weights rounded once, and Q8_0
and Q4_0 quantize the same f32 values LiteRT's quantizer saw, every matrix at the asked type (without --pure,
llama.cpp would put the output matrix at Q6_K, a mix our recipes have no counterpart for).

The converter reads the tokenizer from the folder; our models have no tokenizer of their own, so the harness's
SentencePiece model (harness/artifacts/tokenizer.py, padded to the model's vocabulary) goes beside the weights, in
a staging folder of links: the checkpoint folder itself is never written to.

Cache key: each safetensors file's sha256, config.json's bytes, the tokenizer's bytes, the llama.cpp version,
GGUF_REVISION and the type. The F32 file stays in the cache as the root of the others (4 bytes per parameter).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import filelock

from harness.artifacts.llama_cpp import LlamaCppBuild
from harness.artifacts.tokenizer import TokenizerSpec, ensure_tokenizer
from harness.common.files import cache_root, local_sha256
from harness.common.text import tail

# The harness's recipes (harness/artifacts/recipe.py QUANTS) → llama.cpp's tensor type. `none` (float32 in LiteRT)
# maps to F16 as well: llama.cpp's float models are 16-bit, and its F32 is not a configuration anyone runs.
GGUF_TYPES = {
    "none": "F16",
    "fp16": "F16",
    "dynamic_int8": "Q8_0",  # int8 weights, one scale per 32 values; llama.cpp's dot products are int8 too
    "weight_only_int8": "Q8_0",
    "dynamic_int4_block32": "Q4_0",  # int4 weights in blocks of 32 with one scale each: the same blocking
}
BASE_TYPE = "F32"  # what the converter writes, the root of every other type
# Bump when what this module writes changes (the converter's arguments, llama-quantize's).
GGUF_REVISION = 1
_CONVERT_TIMEOUT_S = 3600
_QUANTIZE_TIMEOUT_S = 3600
_CHECKPOINT_FILES = ("config.json", "model.safetensors.index.json")


class NoCounterpart(ValueError):
    """A recipe llama.cpp has no tensor type for; `reason` says which and what exists."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class GgufError(RuntimeError):
    """Making a GGUF failed (llama-quantize, or a converter that ran out of time)."""


class ConverterRefused(GgufError):
    """convert_hf_to_gguf.py would not convert the checkpoint; `reason` is its own error line."""

    def __init__(self, message: str, reason: str, stderr: str):
        super().__init__(message)
        self.reason = reason
        self.stderr = stderr


def gguf_type(quant: str) -> str:
    """llama.cpp's tensor type for a harness recipe; NoCounterpart where it has none."""
    try:
        return GGUF_TYPES[quant]
    except KeyError:
        known = ", ".join(f"{q} → {t}" for q, t in GGUF_TYPES.items())
        raise NoCounterpart(f"recipe {quant!r} has no llama.cpp counterpart (its quantization types of this kind "
                            f"are F16, Q8_0 and Q4_0, blocks of 32; the recipes that map: {known})") from None


def ensure_gguf(checkpoint: Path, quant: str, vocab_size: int, build: LlamaCppBuild,
                log: TextIO | None = None) -> Path:
    """The GGUF of `checkpoint` at `quant`'s llama.cpp type, converted (and quantized) once, then cached.

    Raises NoCounterpart for a recipe llama.cpp cannot express (before any work), ConverterRefused with the
    converter's own error line for a checkpoint it will not take. `build` must be a host build: its
    llama-quantize runs here."""
    log = log or sys.stderr
    target_type = gguf_type(quant)
    checkpoint = Path(checkpoint)
    tokenizer = ensure_tokenizer(TokenizerSpec(vocab_size=vocab_size))
    folder = cache_root() / "gguf" / gguf_key(checkpoint, tokenizer, build.version)[:16]
    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(folder / "convert.lock"):
        base = folder / f"model-{BASE_TYPE}.gguf"
        if not base.is_file():
            _convert(checkpoint, tokenizer, build, base, log)
        out = folder / f"model-{target_type}.gguf"
        if not out.is_file():
            _quantize(build, base, out, target_type, log)
    return out


def gguf_key(checkpoint: Path, tokenizer: Path, version: str) -> str:
    """What makes a GGUF's bytes, but for its type (which names the file in the key's folder)."""
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not (checkpoint / "config.json").is_file() or not weights:
        raise FileNotFoundError(f"{checkpoint} is not an HF checkpoint folder (config.json and *.safetensors)")
    inputs = {
        "weights": {p.name: local_sha256(p) for p in weights},
        "files": {name: hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()
                  for name in _CHECKPOINT_FILES if (checkpoint / name).is_file()},
        "tokenizer": local_sha256(tokenizer),
        "llama_cpp_python": version,
        "revision": GGUF_REVISION,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _convert(checkpoint: Path, tokenizer: Path, build: LlamaCppBuild, out: Path, log: TextIO) -> None:
    """convert_hf_to_gguf.py on a staging folder (links to the checkpoint's files + our tokenizer) → `out`."""
    print(f"converting {checkpoint} to GGUF {BASE_TYPE} (llama.cpp {build.version} convert_hf_to_gguf.py) ...",
          file=log, flush=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="convert.", dir=out.parent) as tmp:
        staging = Path(tmp) / checkpoint.resolve().name  # the converter names the model after its folder
        _stage_checkpoint(checkpoint, tokenizer, staging)
        partial = Path(tmp) / out.name
        cmd = [sys.executable, str(build.source / "convert_hf_to_gguf.py"), str(staging), "--outfile", str(partial),
               "--outtype", BASE_TYPE.lower()]
        # gguf-py from the same tree as the converter, not whatever `gguf` is installed; offline, as the harness is.
        env = {**os.environ, "PYTHONPATH": str(build.source / "gguf-py"), "HF_HUB_OFFLINE": "1"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=_CONVERT_TIMEOUT_S,
                                  env=env)
        except subprocess.TimeoutExpired:
            raise GgufError(f"convert_hf_to_gguf.py took over {_CONVERT_TIMEOUT_S} s on {checkpoint}") from None
        if proc.returncode != 0 or not partial.is_file():
            reason = converter_reason(proc.stderr)
            raise ConverterRefused(f"llama.cpp's convert_hf_to_gguf.py refused {checkpoint} (exit "
                                   f"{proc.returncode}): {reason}", reason, proc.stderr)
        os.replace(partial, out)
    print(f"converted {checkpoint.name} to GGUF {BASE_TYPE} in {time.monotonic() - start:.1f} s → {out}", file=log,
          flush=True)


def _stage_checkpoint(checkpoint: Path, tokenizer: Path, staging: Path) -> None:
    """A folder holding links to the checkpoint's config and weights and a copy of our tokenizer: what the
    converter reads, without writing into the user's folder or picking up a tokenizer of theirs."""
    staging.mkdir()
    for path in sorted(checkpoint.iterdir()):
        if path.name in _CHECKPOINT_FILES or path.suffix == ".safetensors":
            (staging / path.name).symlink_to(path.resolve())
    shutil.copyfile(tokenizer, staging / "tokenizer.model")


# A Python exception line ("KeyError: 'x'", "NotImplementedError: ...", "gguf.SomeError: ..."), a traceback's frame
# line, and the converter's logged errors ("ERROR:hf-to-gguf:Model X is not supported").
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(: .*)?$")
_FRAME_LINE = re.compile(r'^File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$')
_LOGGED_ERROR = re.compile(r"^(ERROR|CRITICAL):[^:]*:(?P<message>.*)$")


def converter_reason(stderr: str) -> str:
    """The converter's own error line: the last exception line of its traceback (a bare one, such as an assert's
    `AssertionError`, with the statement that raised it and where), else its last logged error, else the end of its
    output."""
    lines = [line.strip() for line in stderr.strip().splitlines()]
    raised = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    if raised:
        exception = lines[raised[-1]]
        return exception if ": " in exception else f"{exception} at {_raising_statement(lines[:raised[-1]])}"
    logged = [m.group("message").strip() for line in lines if (m := _LOGGED_ERROR.match(line))]
    return logged[-1] if logged else tail(stderr, 3) or "no output"


def _raising_statement(traceback: list[str]) -> str:
    """The last frame of a traceback as `statement (file.py:line, in function)`."""
    frames = [i for i, line in enumerate(traceback) if _FRAME_LINE.match(line)]
    if not frames:
        return "an unknown place"
    frame = _FRAME_LINE.match(traceback[frames[-1]])
    statement = traceback[frames[-1] + 1] if frames[-1] + 1 < len(traceback) else ""
    statement = statement.split("  #", 1)[0].strip()  # a trailing comment (`# ty: ignore[...]`) says nothing
    where = f"{Path(frame['file']).name}:{frame['line']}, in {frame['function']}"
    return f"`{statement}` ({where})" if statement else f"({where})"


def _quantize(build: LlamaCppBuild, base: Path, out: Path, target_type: str, log: TextIO) -> None:
    """llama-quantize --pure BASE OUT TYPE: every matrix at `target_type` (norms and other vectors stay F32)."""
    print(f"quantizing {base.name} to {target_type} (llama-quantize --pure) ...", file=log, flush=True)
    start = time.monotonic()
    partial = out.with_name(out.name + ".partial")
    cmd = [str(build.quantize), "--pure", str(base), str(partial), target_type, str(os.cpu_count() or 1)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=_QUANTIZE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise GgufError(f"llama-quantize took over {_QUANTIZE_TIMEOUT_S} s: {' '.join(cmd)}") from None
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise GgufError(f"llama-quantize failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                        f"{tail(proc.stdout + proc.stderr, 40)}")
    os.replace(partial, out)
    print(f"quantized to {target_type} in {time.monotonic() - start:.1f} s → {out}", file=log, flush=True)
