"""Does the model we ship compute what the original computes? Per model (every family by default):

- reauthoring: the litert-torch model vs the transformers model of the same architecture and weights, read
  through the HF remap (prefill logits, decode steps with the KV cache, 32 greedy tokens);
- conversion: the fp32 .tflite vs the PyTorch model (signatures, I/O, one weight copy, 16 decode steps);
- drift: each quantized recipe vs fp32 (top-1 agreement, KL, max |Δlogit|, size) against accuracy.toml.

Every check's figures are stored with the run (the `accuracy` table) before the test judges them.
`pytest suites/ -m accuracy` runs the tiny configs; `-m "accuracy and full"` the published sizes.
"""

import pytest

pytestmark = pytest.mark.accuracy


def test_accuracy(accuracy_cell, bench_session):
    result, verdict = bench_session.check_accuracy(accuracy_cell)
    assert result["model"] == f"{accuracy_cell.model}-{accuracy_cell.size}"
    assert result["passed"], "; ".join(result["failures"])
    if not verdict.passed:  # against the baseline run's same check (--baseline; gate.toml's max_accuracy_drift)
        pytest.fail(verdict.message(), pytrace=False)
