"""harness/artifacts/phases.py: the conversion children's phase lines, their figures, and the memory ceiling."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from harness.common.files import REPO_ROOT

_CHILD = textwrap.dedent("""
    import json, sys
    from harness.artifacts.phases import PhaseLog
    with PhaseLog("probe") as log:
        with log.phase("small"):
            small = bytearray(8 << 20)
        with log.phase("large"):
            with log.phase("inner"):
                large = bytearray(int(sys.argv[1]) << 20)
                large[::4096] = b"x" * len(large[::4096])  # touch every page: resident, anonymous
                import time; time.sleep(0.3)
    print(json.dumps(log.phases))
""")


def _run(mib: int, limit_gb: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    if limit_gb is not None:
        env["LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB"] = limit_gb
    return subprocess.run([sys.executable, "-c", _CHILD, str(mib)], capture_output=True, text=True, env=env,
                          timeout=60, cwd=REPO_ROOT)


def test_each_phase_gets_its_peak_including_its_sub_phases_and_top_phases_a_line():
    done = _run(300, None)
    assert done.returncode == 0, done.stderr
    import json

    phases = {p["phase"]: p for p in json.loads(done.stdout.splitlines()[-1])}
    assert list(phases) == ["small", "large > inner", "large"]
    assert phases["large > inner"]["peak_anon_mb"] > 300 > phases["small"]["peak_anon_mb"]
    assert phases["large"]["peak_anon_mb"] >= phases["large > inner"]["peak_anon_mb"]  # the parent saw it too
    assert phases["large"]["peak_rss_mb"] >= phases["large"]["peak_anon_mb"]
    assert "[probe] large: " in done.stderr and "anonymous" in done.stderr
    assert "[probe] large > inner" not in done.stderr  # a sub-phase under 5 s: in the figures, not a line


def test_a_conversion_over_the_memory_ceiling_stops_and_names_its_phase():
    done = _run(400, "0.2")  # 200 MiB
    assert done.returncode == 3
    assert "stopped in phase 'large > inner'" in done.stderr
    assert "LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB" in done.stderr


def test_a_ceiling_that_is_not_a_number_is_named():
    done = _run(1, "lots")
    assert done.returncode != 0 and "LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB must be a number of GiB, got 'lots'" in (
        done.stderr)
