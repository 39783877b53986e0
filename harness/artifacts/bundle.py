"""Bundles of a converted model with its tokenizer: LiteRT-LM's `.litertlm` and MediaPipe's `.task`, what they
hold. Running a bundle in LiteRT-LM's own engine is a runner's work: device_runners/runners/litert_lm.py.

- `.litertlm`: litert-torch's builder (litert_lm_builder underneath), in this environment.
- `.task`: MediaPipe's LLM bundler, which only mediapipe 0.10.35 has. It would co-install with the harness's
  environment, but it brings opencv, sounddevice and a second copy of MediaPipe's protobuf world into the
  process that converts and measures, for one zip file; so it runs as an isolated step instead: a venv created on
  demand under the cache root with mediapipe and sentencepiece, invoked as a subprocess
  (harness/artifacts/mediapipe_bundler.py).
- LiteRT-LM's engine (litert-lm-api's `litert_lm.Engine`) reads a bundle's context length from the KV cache's
  third dimension, which only litert-torch's *transposed* layout puts there: with the default layout
  ([1, kv_len, heads, head_dim]) it reads the number of KV heads and refuses any prompt longer than that. So a
  bundle the engine runs is built from an artifact converted with `Recipe(kv_layout="transposed")`.
"""

from __future__ import annotations

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

from harness.common.files import cache_root
from harness.common.text import tail

if TYPE_CHECKING:  # harness.artifacts.cache imports torch: only for the type
    from harness.artifacts.cache import Artifact

MEDIAPIPE_VERSION = "0.10.35"  # the last mediapipe with tasks/python/genai/bundler (1.2.x dropped it)
TASK_MEMBERS = ("TF_LITE_PREFILL_DECODE", "TOKENIZER_MODEL", "METADATA")
# MediaPipe's LlmParameters fields that its bundler writes (llm_params.proto); others are shown by number.
_LLM_PARAMETERS_FIELDS = {2: "vocab_size", 4: "start_token_id", 5: "stop_tokens", 6: "start_token"}
_BUNDLER_SCRIPT = Path(__file__).resolve().parent / "mediapipe_bundler.py"


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
        raise RuntimeError(f"mediapipe's LLM bundler failed (exit {proc.returncode}):\n{tail(proc.stderr, 30)}")
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
                               f"{tail(proc.stdout + proc.stderr, 30)}")
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
