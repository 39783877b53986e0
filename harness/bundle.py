"""Bundles of a converted model with its tokenizer: LiteRT-LM's `.litertlm` and MediaPipe's `.task`, what they
hold, and greedy generation in LiteRT-LM's own engine to compare with the native runner.

- `.litertlm`: litert-torch's builder (litert_lm_builder underneath), in this environment.
- `.task`: MediaPipe's LLM bundler, which only mediapipe 0.10.35 has. It would co-install with the harness's
  environment, but it brings opencv, sounddevice and a second copy of MediaPipe's protobuf world into the
  process that converts and measures, for one zip file; so it runs as an isolated step instead: a venv created on
  demand under the cache root with mediapipe and sentencepiece, invoked as a subprocess
  (harness/mediapipe_bundler.py).
- LiteRT-LM's engine (litert-lm-api's `litert_lm.Engine`) reads a bundle's context length from the KV cache's
  third dimension, which only litert-torch's *transposed* layout puts there: with the default layout
  ([1, kv_len, heads, head_dim]) it reads the number of KV heads and refuses any prompt longer than that. So a
  bundle the engine runs is built from an artifact converted with `Recipe(kv_layout="transposed")`.

    python -m harness.bundle generate --model M.litertlm --prompt TEXT --max-tokens 16   # engine, prints JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import filelock

from device_runners.paths import cache_root

if TYPE_CHECKING:  # harness.artifacts imports torch: the engine's child process (main below) does without it
    from harness.artifacts import Artifact

MEDIAPIPE_VERSION = "0.10.35"  # the last mediapipe with tasks/python/genai/bundler (1.2.x dropped it)
TASK_MEMBERS = ("TF_LITE_PREFILL_DECODE", "TOKENIZER_MODEL", "METADATA")
# MediaPipe's LlmParameters fields that its bundler writes (llm_params.proto); others are shown by number.
_LLM_PARAMETERS_FIELDS = {2: "vocab_size", 4: "start_token_id", 5: "stop_tokens", 6: "start_token"}
_BUNDLER_SCRIPT = Path(__file__).resolve().parent / "mediapipe_bundler.py"


class EngineError(RuntimeError):
    """LiteRT-LM's engine failed; `reason` is its own error line (e.g. the context length it refused)."""

    def __init__(self, message: str, reason: str, stderr: str):
        super().__init__(message)
        self.reason = reason
        self.stderr = stderr


@dataclasses.dataclass(frozen=True)
class EngineRun:
    chunks: list[str]  # the text of each decode step, as the engine streamed it
    prompt_tokens: list[int]  # the engine's tokenization of the prompt, without its start token
    start_token: int | None  # prepended to the prompt by the engine
    stop_tokens: list[list[int]]
    seconds: float

    @property
    def text(self) -> str:
        return "".join(self.chunks)


# ---------------------------------------------------------------------------------------------------- building


def build_litertlm(artifact: Artifact | Path, tokenizer: Path, out: Path, *, context_length: int | None = None) -> Path:
    """`.litertlm` of the artifact's .tflite with the SentencePiece `tokenizer`; start and stop tokens are the
    tokenizer's bos and eos. `context_length` defaults to the artifact's KV length. Returns `out`."""
    from litert_torch.generative.utilities import litertlm_builder

    tflite, kv_len = _tflite_of(artifact)
    context_length = context_length or kv_len
    if context_length is None:
        raise ValueError("context_length is needed for a bare .tflite path (an Artifact carries its kv_len)")
    bos, eos = _special_ids(tokenizer)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        # The builder names its output after the .tflite's stem inside output_path; build aside, then move.
        litertlm_builder.build_litertlm(
            tflite_model_path=str(tflite), workdir=tmp, output_path=tmp, context_length=context_length,
            tokenizer_model_path=str(tokenizer), start_token_id=bos, stop_token_ids=[eos])
        os.replace(Path(tmp) / f"{tflite.stem}.litertlm", out)
    return out


def build_task(artifact: Artifact | Path, tokenizer: Path, out: Path, *, python: Path | None = None) -> Path:
    """MediaPipe `.task` of the artifact's .tflite with the SentencePiece `tokenizer`, by mediapipe's LLM bundler
    in the isolated environment (`python`, default: mediapipe_env()). Returns `out`."""
    tflite, _ = _tflite_of(artifact)
    python = python or mediapipe_env()
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.task")  # the bundler appends .task to names without it
    job = {"tflite_model": str(tflite), "tokenizer_model": str(tokenizer), "start_token": sp.id_to_piece(sp.bos_id()),
           "stop_tokens": [sp.id_to_piece(sp.eos_id())], "output_filename": str(partial)}
    proc = subprocess.run([str(python), str(_BUNDLER_SCRIPT), json.dumps(job)], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"mediapipe's LLM bundler failed (exit {proc.returncode}):\n{_tail(proc.stderr)}")
    os.replace(partial, out)
    return out


def mediapipe_env() -> Path:
    """The interpreter of the isolated MediaPipe environment, created on first use (pip from the package
    registry) under the cache root and reused after; concurrent callers create it once."""
    requirements = [f"mediapipe=={MEDIAPIPE_VERSION}", f"sentencepiece=={metadata.version('sentencepiece')}"]
    key = hashlib.sha256(json.dumps([sys.version_info[:2], requirements]).encode()).hexdigest()[:12]
    folder = cache_root() / "envs" / f"mediapipe-{MEDIAPIPE_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}-{key}"
    python, ready = folder / "bin" / "python", folder / "ready"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(folder) + ".lock"):
        if ready.is_file():
            return python
        shutil.rmtree(folder, ignore_errors=True)  # a half-built environment from an interrupted run
        start = time.monotonic()
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"could not create the MediaPipe bundler environment ({' '.join(cmd)}):\n"
                               f"{_tail(proc.stdout + proc.stderr)}")
        ready.write_text(json.dumps({"requirements": requirements, "seconds": round(time.monotonic() - start, 1)}))
    return python


def _tflite_of(artifact: Artifact | Path) -> tuple[Path, int | None]:
    if isinstance(artifact, str | os.PathLike):
        return Path(artifact), None
    return Path(artifact.path), artifact.meta.get("kv_len")


def _special_ids(tokenizer: Path) -> tuple[int, int]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    if sp.bos_id() < 0 or sp.eos_id() < 0:
        raise ValueError(f"tokenizer {tokenizer} has no bos or eos piece; bundles need both")
    return sp.bos_id(), sp.eos_id()


# ---------------------------------------------------------------------------------------------------- reading


def bundle_contents(path: Path) -> dict:
    """What a bundle holds. `.task`: its zip members (size, sha256) and the METADATA fields. `.litertlm`: the
    format version, system metadata, and each section's type, items, size and sha256, plus the LLM metadata."""
    path = Path(path)
    if path.suffix == ".task":
        return _task_contents(path)
    if path.suffix == ".litertlm":
        return _litertlm_contents(path)
    raise ValueError(f"not a bundle (.task or .litertlm): {path}")


def _task_contents(path: Path) -> dict:
    with zipfile.ZipFile(path) as bundle:
        members = {info.filename: {"bytes": info.file_size, "sha256": hashlib.sha256(bundle.read(info)).hexdigest()}
                   for info in bundle.infolist()}
        metadata_fields = _proto_fields(bundle.read("METADATA")) if "METADATA" in members else {}
    named = {_LLM_PARAMETERS_FIELDS.get(number, f"field_{number}"): values
             for number, values in metadata_fields.items()}
    return {"format": "task", "members": members, "metadata": named}


def _litertlm_contents(path: Path) -> dict:
    from google.protobuf import json_format
    from litert_lm_builder import litertlm_core, litertlm_peek
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    version = io.StringIO()
    header = litertlm_peek.read_litertlm_header(str(path), version)  # checks the magic bytes
    system = header.SystemMetadata()
    contents: dict = {
        "format": "litertlm",
        "version": version.getvalue().split(":", 1)[1].strip(),
        "system_metadata": dict(_key_value(system.Entries(i)) for i in range(system.EntriesLength() if system else 0)),
        "sections": [],
    }
    sections = header.SectionMetadata()
    with path.open("rb") as f:
        for i in range(sections.ObjectsLength() if sections else 0):
            section = sections.Objects(i)
            f.seek(section.BeginOffset())
            data = f.read(section.EndOffset() - section.BeginOffset())
            kind = litertlm_core.any_section_data_type_to_string(section.DataType())
            items = dict(_key_value(section.Items(j)) for j in range(section.ItemsLength()))
            contents["sections"].append({"type": kind, "items": items, "offset": section.BeginOffset(),
                                         "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            if kind == "LlmMetadataProto":
                message = llm_metadata_pb2.LlmMetadata.FromString(data)
                contents["llm_metadata"] = json_format.MessageToDict(message)
    return contents


def _key_value(pair) -> tuple[str, object]:
    from litert_lm_builder import litertlm_peek

    entry = litertlm_peek.kvp_to_dict(pair)  # {"key", "value", "value_type"}
    return entry["key"], entry["value"]


def _proto_fields(data: bytes) -> dict[int, list]:
    """Top-level fields of a protobuf message by number (varints as ints, length-delimited as text where it is
    UTF-8, else hex): enough to read what MediaPipe's bundler writes without its generated classes."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            raw, pos = data[pos:pos + size], pos + size
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                value = raw.hex()
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos:pos + width].hex(), pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


# ---------------------------------------------------------------------------------------------------- the engine


def engine_generate(model: Path, prompt: str, max_tokens: int, threads: int = 1, timeout: float = 300) -> EngineRun:
    """Greedy generation in LiteRT-LM's engine on the host, in a child process (the engine's native library,
    its log output and a possible crash stay out of this one): the prompt as text, no prompt template, at most
    `max_tokens` decode steps. Raises EngineError with the engine's own error line when it fails."""
    cmd = [sys.executable, "-m", "harness.bundle", "generate", "--model", str(model), "--prompt", prompt,
           "--max-tokens", str(max_tokens), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        reason = _engine_reason(proc.stderr)
        raise EngineError(f"LiteRT-LM's engine failed on {model} (exit {proc.returncode}): {reason}", reason,
                          proc.stderr)
    out = json.loads(proc.stdout)
    return EngineRun(out["chunks"], out["prompt_tokens"], out["start_token"], out["stop_tokens"], out["seconds"])


def _engine_reason(stderr: str) -> str:
    """The engine's own error lines (absl's E-prefixed log lines, then a Python exception), without the noise."""
    lines = stderr.strip().splitlines()
    # absl's log prefix: severity letter, then date or 0000, e.g. "E0000 00:00:1795574806.290158 2900 engine.cc:1004]"
    errors = [line.split("] ", 1)[-1] for line in lines if line[:1] == "E" and line[1:5].isdigit()]
    # The engine only warns where it takes its context length from the model rather than the bundle.
    limits = [line.split("] ", 1)[-1] for line in lines if "static model supports" in line]
    exceptions = [line for line in lines if line.split(":", 1)[0].endswith(("Error", "Exception"))]
    return " | ".join(dict.fromkeys([*limits[:1], *errors, *exceptions[-1:]])) or _tail(stderr, 5)


def step_candidates(chunks: list[str], tokenizer: Path) -> list[tuple[int, ...]]:
    """For each streamed step, the token ids whose SentencePiece piece prints as that step's text.

    The engine's Python API gives text, not ids. Every piece is a distinct string and the engine streams one
    chunk per decode step (a piece's word-start marker ▁ printed as a space), so a chunk names one id, with one
    exception: SentencePiece drops the word-start marker of the first piece it decodes, so the first chunk "x"
    is either the piece "x" or "▁x". Control pieces print as "" and the Python API drops empty chunks.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    by_text: dict[str, list[int]] = {}
    for i in range(sp.get_piece_size()):
        if not (sp.is_control(i) or sp.is_unknown(i)):
            by_text.setdefault(sp.id_to_piece(i).replace("\u2581", " "), []).append(i)
    by_text.setdefault(sp.decode([sp.unk_id()]), []).append(sp.unk_id())
    steps = []
    for index, chunk in enumerate(chunks):
        ids = list(by_text.get(chunk, []))
        if index == 0:
            ids += by_text.get(" " + chunk, [])
        steps.append(tuple(sorted(ids)))
    return steps


def agrees(tokens: list[int], candidates: list[tuple[int, ...]], stop_tokens: list[list[int]]) -> bool:
    """Whether the engine's steps are the runner's greedy tokens: the same number of steps up to the first stop
    token (which the engine stops at and does not print), each step's token among that step's candidates."""
    stops = {ids[0] for ids in stop_tokens if len(ids) == 1}
    expected = []
    for token in tokens:
        if token in stops:
            break
        expected.append(token)
    return len(expected) == len(candidates) and all(t in c for t, c in zip(expected, candidates, strict=True))


def _generate_main(args: argparse.Namespace) -> None:
    import litert_lm

    start = time.monotonic()
    with tempfile.TemporaryDirectory() as cache:  # the engine's XNNPACK cache, not next to the bundle
        # float32 activations, like the native runner: the engine's default for the text decoder is fp16,
        # which would round differently on CPUs that have fp16 arithmetic.
        engine = litert_lm.Engine(str(args.model), backend=litert_lm.Backend.CPU(thread_count=args.threads),
                                  cache_dir=cache, activation_data_type=litert_lm.ActivationDataType.FLOAT32)
        session = engine.create_session(apply_prompt_template=False, max_output_tokens=args.max_tokens)
        try:
            session.run_prefill([args.prompt])
            chunks = [response.texts[0] for response in session.run_decode_async()]
            result = {"chunks": chunks, "prompt_tokens": engine.tokenize(args.prompt),
                      "start_token": engine.bos_token_id, "stop_tokens": engine.eos_token_ids,
                      "seconds": round(time.monotonic() - start, 3)}
        finally:
            session.close()  # before the engine, which otherwise logs that a session outlived it
            engine.close()
    json.dump(result, sys.stdout)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m harness.bundle")
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="greedy generation in LiteRT-LM's engine; prints JSON")
    g.add_argument("--model", type=Path, required=True, help=".litertlm (or .task) bundle")
    g.add_argument("--prompt", required=True, help="prompt text (no prompt template is applied)")
    g.add_argument("--max-tokens", type=int, default=16)
    g.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    _generate_main(args)


if __name__ == "__main__":
    main()
