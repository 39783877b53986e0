"""Progress lines of the slow steps outside conversion: a push of a model to a device."""

from __future__ import annotations

import pytest

from device_runners.transports.base import push_progress


def test_a_large_push_gets_a_line_before_and_after_with_its_rate(capsys):
    with push_progress("model.tflite", 300 << 20, "pixel8"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "pushing model.tflite (300 MiB) to pixel8 ..."
    assert lines[1].startswith("pushed model.tflite to pixel8 in ") and lines[1].endswith(" MB/s)")


def test_a_small_push_is_quiet_and_a_failed_one_says_nothing_of_success(capsys):
    with push_progress("tiny.tflite", 2 << 20, "pixel8"):
        pass
    assert capsys.readouterr().err == ""
    with pytest.raises(OSError), push_progress("model.tflite", 300 << 20, "pixel8"):
        raise OSError("device lost")
    assert "pushed" not in capsys.readouterr().err
