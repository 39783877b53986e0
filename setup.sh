#!/usr/bin/env bash
# One-time setup of .venv from the project's own files; a second call checks and returns in seconds.
# torch goes in first, pinned, so pip takes the local CPU wheel instead of resolving a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.litert-bench-installed
want=$(sha256sum pyproject.toml setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing into .venv (first time: about a minute, ~2.5 GB)"
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  # iPhones (device_runners/transports/ios.py, fake_ios/). A step of its own: its dependency asgiwebdav needs
  # typing-extensions >= 4.13 (through dataclass-wizard) while litert-converter's xdsl declares < 4.13, so pip
  # cannot resolve both in one install. Conversion was measured to work with the newer typing-extensions (the
  # whole test suite converts every family), and pip only warns about xdsl's declared bound here.
  out=$(.venv/bin/pip install -q --disable-pip-version-check pymobiledevice3==11.45.0 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$out" | grep -v "dependency resolver does not currently take into account\|xdsl .* requires typing-extensions" || true
  echo "$want" > "$stamp"
fi
# The native runner needs a C++ compiler and CMake; say so now rather than mid-run.
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' not found: install it (Debian: apt-get install cmake g++)" >&2; exit 1; }
done
