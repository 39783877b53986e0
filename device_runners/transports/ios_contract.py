"""What the host and the iOS runner app agree on: file names in the app's Documents folder, the request's shape
and the bundle id. Three parties read this: the iOS transport (transports/ios.py), the protocol-level test
iPhone (fake_ios/), and the app itself (native/ios/, which spells the same names in Objective-C++; a test checks
they agree). Stock iPhones run no command-line programs, so a run is a conversation through files:

1. the host pushes the model (and anything else the runner reads) into `Documents/cache/`, named by content;
2. it writes `Documents/request.json`: {"id": RUN_ID, "argv": [runner flags...]}, where every path in argv is
   relative to Documents (the app resolves it there), and removes any `result.json`/`done` left from before;
3. it launches the app (DVT processcontrol on iOS <= 16, through tunneld/RSD on 17+);
4. the app runs the same C++ runner core as every other target with that argv, writes the runner's stdout
   (one JSON document) to `result.json`, its stderr to `stderr.txt`, and last `done`, which holds the runner's
   exit code and the run id as `CODE RUN_ID`;
5. the host polls for `done` (under the runner's timeout), then pulls `result.json` and `stderr.txt`. An app
   that died without `done` crashed: the host pulls its crash report (`crashreportcopymobile`, files named
   `APP_EXECUTABLE-*.ips`) and fails the run with its first lines; one still running at the timeout is killed
   by pid.
"""

from __future__ import annotations

BUNDLE_ID = "dev.litertbench.runner"
EXECUTABLE = "LiteRTBenchRunner"  # CFBundleExecutable: names the app's crash reports

DOCUMENTS = "Documents"
CACHE_DIR = "Documents/cache"  # staged files, named SHA256-NAME so that a second push is skipped
REQUEST = "Documents/request.json"
RESULT = "Documents/result.json"
STDERR = "Documents/stderr.txt"
DONE = "Documents/done"
THERMAL = "Documents/thermal.json"  # ProcessInfo.thermalState before and after the run: {"before": ..., "after": ...}


def done_text(exit_code: int, run_id: str) -> str:
    return f"{exit_code} {run_id}\n"


def parse_done(text: str) -> tuple[int, str]:
    """(exit code, run id) from a `done` file; ValueError on anything else."""
    code, _, run_id = text.strip().partition(" ")
    return int(code), run_id
