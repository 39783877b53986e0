"""Build the native runner (device_runners/native, `llm_runner`) with CMake, cached by content.

The cache key is the sha256 of the runner's sources and CMakeLists, of the runtime library it links
and of the target, so a second call with nothing changed builds nothing. The binary is meant to run
next to a copy of its runtime library (RUNPATH $ORIGIN): that is how it is pushed to a device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from harness.common.files import cache_root
from harness.common.text import tail

NATIVE_DIR = Path(__file__).resolve().parent.parent / "native"
TARGETS = ("host", "android-arm64")
RUNTIME_LIB = "liblitert-lm.so"
# The last litert-lm-api whose library exports the TFLite C API (0.19 nightlies no longer do).
LITERT_LM_VERSION = "0.18.1"
_ANDROID_PLATFORM = "android-23"
_ANDROID_WHEEL_PLATFORM = "android_23_arm64_v8a"


@dataclasses.dataclass(frozen=True)
class RunnerBuild:
    binary: Path
    runtime_lib: Path  # push it next to the binary
    target: str


def default_cache_dir() -> Path:
    """Where builds go: $LITERT_BENCH_CACHE/runner, else ~/.cache/litert-bench/runner."""
    return cache_root() / "runner"


def build_runner(target: str = "host", cache_dir: Path | None = None) -> RunnerBuild:
    """Build llm_runner for `target` ("host" or "android-arm64"), or reuse the cached build."""
    _check_target(target)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if target == "host":
        lib, cmake_args = host_runtime_lib(), []
    else:
        toolchain = _android_toolchain()
        lib = android_runtime_lib(cache)
        cmake_args = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", "-DANDROID_ABI=arm64-v8a",
                      f"-DANDROID_PLATFORM={_ANDROID_PLATFORM}"]
    out = cache / f"{target}-{_build_key(target, lib, cmake_args)[:16]}"
    binary = out / "llm_runner"
    if not binary.is_file():
        _cmake_build(out, lib, cmake_args)
    return RunnerBuild(binary, lib, target)


def prebuilt_runner(binary: Path | str, target: str = "host", cache_dir: Path | None = None) -> RunnerBuild:
    """A runner built elsewhere; its runtime library is the liblitert-lm.so next to it, else the one
    build_runner would link for `target`."""
    _check_target(target)
    binary = Path(binary).resolve()
    if not binary.is_file():
        raise FileNotFoundError(f"runner binary '{binary}' does not exist")
    lib = binary.with_name(RUNTIME_LIB)
    if not lib.is_file():
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        lib = host_runtime_lib() if target == "host" else android_runtime_lib(cache)
    return RunnerBuild(binary, lib, target)


def host_runtime_lib() -> Path:
    """liblitert-lm.so of the installed litert-lm-api package (found without importing it)."""
    spec = importlib.util.find_spec("litert_lm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"litert_lm is not installed: pip install litert-lm-api=={LITERT_LM_VERSION}")
    for location in spec.submodule_search_locations:
        if (lib := Path(location) / RUNTIME_LIB).is_file():
            return lib
    raise RuntimeError(f"the installed litert_lm package has no {RUNTIME_LIB}")


def android_runtime_lib(cache: Path) -> Path:
    """The Android arm64 liblitert-lm.so from the litert-lm-api wheel, downloaded once into `cache`."""
    lib = cache / f"litert-lm-{LITERT_LM_VERSION}-{_ANDROID_WHEEL_PLATFORM}" / RUNTIME_LIB
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", _ANDROID_WHEEL_PLATFORM, "--python-version", "3.13",
               f"litert-lm-api=={LITERT_LM_VERSION}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download the Android litert-lm-api wheel ({' '.join(cmd)}):\n"
                               f"{tail(proc.stdout + proc.stderr, 40)}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            extracted = Path(tmp) / RUNTIME_LIB
            extracted.write_bytes(wheel.read(f"litert_lm/{RUNTIME_LIB}"))
        extracted.chmod(0o755)
        os.replace(extracted, lib)  # atomic: a concurrent caller sees all of it or nothing
    return lib


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown runner target {target!r}; known: {', '.join(TARGETS)}")


def _android_toolchain() -> Path:
    ndk = os.environ.get("ANDROID_NDK_HOME")
    if not ndk:
        raise RuntimeError("no Android runner: building llm_runner for android-arm64 needs the Android NDK, "
                           "and ANDROID_NDK_HOME is not set. Set ANDROID_NDK_HOME to the NDK directory (the one "
                           "holding build/cmake/android.toolchain.cmake), or pass --runner-bin with an arm64 "
                           "llm_runner built elsewhere")
    toolchain = Path(ndk) / "build" / "cmake" / "android.toolchain.cmake"
    if not toolchain.is_file():
        raise RuntimeError(f"ANDROID_NDK_HOME={ndk} has no build/cmake/android.toolchain.cmake")
    return toolchain


def _build_key(target: str, lib: Path, cmake_args: list[str]) -> str:
    digest = hashlib.sha256("\0".join([target, *cmake_args, ""]).encode())
    sources = [NATIVE_DIR / "CMakeLists.txt", *sorted((NATIVE_DIR / "src").iterdir())]
    for path in sources:
        digest.update(f"{path.relative_to(NATIVE_DIR)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(_file_sha256(lib))
    return digest.hexdigest()


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def _cmake_build(out: Path, lib: Path, cmake_args: list[str]) -> None:
    """Configure and build in a scratch directory, then move it to `out` in one step."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise RuntimeError("cmake not found on PATH; install it (apt-get install cmake or pip install cmake)")
    if not cmake_args and not (os.environ.get("CXX") or any(map(shutil.which, ("c++", "g++", "clang++")))):
        raise RuntimeError("no C++ compiler found (c++, g++ or clang++ on PATH, or $CXX); "
                           "install one (apt-get install g++)")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{out.name}.", dir=out.parent))
    try:
        configure = [cmake, "-S", str(NATIVE_DIR), "-B", str(scratch / "build"), f"-DLITERT_LIB={lib}",
                     "-DCMAKE_BUILD_TYPE=Release", *cmake_args]
        build = [cmake, "--build", str(scratch / "build"), "--parallel", str(os.cpu_count() or 1)]
        for cmd in (configure, build):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                output = tail(proc.stdout + proc.stderr, 40)
                raise RuntimeError(f"llm_runner build failed: {' '.join(cmd)}\n{output}")
        shutil.copy2(scratch / "build" / "llm_runner", scratch / "llm_runner")
        try:
            scratch.rename(out)
        except OSError:
            if not (out / "llm_runner").is_file():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

