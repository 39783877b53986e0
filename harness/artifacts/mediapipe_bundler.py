"""MediaPipe `.task` bundling, run by the isolated MediaPipe environment's interpreter (harness/artifacts/bundle.py
creates it), never imported by the harness: `ENV/bin/python harness/artifacts/mediapipe_bundler.py JOB_JSON`.

Only mediapipe 0.10.35 ships `tasks/python/genai/bundler/llm_bundler.py`. The bundler takes just
`sentencepiece` from `genai/converter/external_dependencies.py`, but that module imports jax and torch
(for the weight converters, which bundling does not use) and fails without them. So this script registers
the converter package without running its `__init__` and a stand-in `external_dependencies` that holds
sentencepiece alone: the environment then needs mediapipe and sentencepiece, not 1.5 GB of jax and torch.
Standard library plus those two only: this file runs outside the harness's environment.
"""

import importlib.util
import json
import os
import sys
import types

_GENAI = "mediapipe.tasks.python.genai"


def _register_converter_stub() -> None:
    import sentencepiece

    genai = importlib.util.find_spec(_GENAI)
    if genai is None or not genai.submodule_search_locations:
        raise SystemExit(f"{_GENAI} not found: this environment needs mediapipe==0.10.35")
    converter = types.ModuleType(f"{_GENAI}.converter")
    converter.__path__ = [os.path.join(genai.submodule_search_locations[0], "converter")]
    dependencies = types.ModuleType(f"{_GENAI}.converter.external_dependencies")
    dependencies.sentencepiece = sentencepiece
    converter.external_dependencies = dependencies
    sys.modules[converter.__name__] = converter
    sys.modules[dependencies.__name__] = dependencies


def main(job: dict) -> None:
    _register_converter_stub()
    from mediapipe.tasks.python.genai import bundler

    bundler.create_bundle(bundler.BundleConfig(
        tflite_model=job["tflite_model"],
        tokenizer_model=job["tokenizer_model"],
        start_token=job["start_token"],
        stop_tokens=job["stop_tokens"],
        output_filename=job["output_filename"],
    ))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
