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


def main(float_path: str, recipes_path: str, quant: str, out: str) -> None:
    recipe = json.loads(Path(recipes_path).read_text())[quant]
    result = quantizer.Quantizer(Path(float_path).read_bytes(), recipe).quantize()
    Path(out).write_bytes(result.quantized_model)


if __name__ == "__main__":
    main(*sys.argv[1:])
