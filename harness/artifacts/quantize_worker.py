"""Quantization worker, run as a child process by harness.artifacts.cache:
`python -m harness.artifacts.quantize_worker FLOAT_TFLITE RECIPES_JSON QUANT OUT`.

Export once, quantize many: litert-torch's one-step conversion lowers the float flatbuffer and then hands its
bytes to ai-edge-quantizer with a recipe it translated for the model, so the cached float artifact put through
the quantizer with that same recipe gives the same bytes (tests/test_artifacts.py checks, every recipe). The
recipe comes from the float export (convert_worker.quant_recipes), so this child imports neither torch nor
litert-torch: it starts in about 2 s where a conversion child needs 10 s of imports, and converts nothing.
"""

import json
import sys
from pathlib import Path

from ai_edge_quantizer import quantizer

from harness.artifacts.phases import PhaseLog


def main(float_path: str, recipes_path: str, quant: str, out: str) -> None:
    recipe = json.loads(Path(recipes_path).read_text())[quant]
    with PhaseLog(f"quantize {quant}") as log, log.phase("quantize"):
        # A path, not bytes: the quantizer maps the float file (11 GB for Phi-2) instead of reading it in.
        quantizer.Quantizer(Path(float_path), recipe).quantize(serialize_to_path=out,
                                                               enable_progress_bar=False, enable_progress_report=False)
    Path(f"{out}.phases.json").write_text(json.dumps(log.phases))


if __name__ == "__main__":
    main(*sys.argv[1:])
