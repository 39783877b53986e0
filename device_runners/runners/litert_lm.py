"""LiteRT-LM's own engine as a runner: greedy generation on a `.litertlm` or `.task` bundle
(harness/artifacts/bundle.py builds them) through litert-lm-api's `litert_lm.Engine`, in a child process, to
compare with the native runner's tokens.

The engine reads a bundle's context length from the KV cache's third dimension, which only litert-torch's
*transposed* layout puts there: with the default layout ([1, kv_len, heads, head_dim]) it reads the number of
KV heads and refuses any prompt longer than that. So a bundle the engine runs is built from an artifact
converted with `Recipe(kv_layout="transposed")`.

    python -m device_runners.runners.litert_lm generate --model M.litertlm --prompt TEXT --max-tokens 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.common.text import tail


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


def engine_generate(model: Path, prompt: str, max_tokens: int, threads: int = 1, timeout: float = 300) -> EngineRun:
    """Greedy generation in LiteRT-LM's engine on the host, in a child process (the engine's native library,
    its log output and a possible crash stay out of this one): the prompt as text, no prompt template, at most
    `max_tokens` decode steps. Raises EngineError with the engine's own error line when it fails."""
    cmd = [sys.executable, "-m", "device_runners.runners.litert_lm", "generate", "--model", str(model),
           "--prompt", prompt, "--max-tokens", str(max_tokens), "--threads", str(threads)]
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
    return " | ".join(dict.fromkeys([*limits[:1], *errors, *exceptions[-1:]])) or tail(stderr, 5)


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



def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m device_runners.runners.litert_lm")
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
