"""Build the native runner (device_runners/native, `llm_runner`) with CMake, cached by content.

Targets: `host` (this machine's compiler, the installed litert-lm-api's library), `linux-arm64` (Debian's
aarch64 cross compiler through native/toolchains/linux-aarch64-gnu.cmake, the manylinux aarch64 wheel's
library) and `android-arm64` (the NDK's toolchain, the Android wheel's library). The two arm64 targets share
everything but the toolchain and the library: the wheel is fetched with `pip download`, and both the wheel and
the library inside are checked against pinned sha256s.

The cache key is the sha256 of the runner's sources and CMakeLists, of the toolchain file, of the runtime
library it links (and the folder it links it from) and of the target, so a second call with nothing changed
builds nothing. The binary is meant
to run next to a copy of its runtime library (RUNPATH $ORIGIN): that is how it is pushed to a device.

`ios-arm64` is not built here: an iPhone runs the runner as an app, built with Xcode on a Mac
(device_runners/native/ios/README.md) and given as --runner-app PATH.ipa; without one, the app the device has
installed runs (ios_runner). The app holds its runtime, so its RunnerBuild has no separate library.
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
import time
import zipfile
from pathlib import Path

from device_runners.transports.ios_support import INSTALLED_APP, IOS_README, IOS_TARGET, read_ipa
from harness.common.files import cache_root
from harness.common.text import tail

NATIVE_DIR = Path(__file__).resolve().parent.parent / "native"
TARGETS = ("host", "linux-arm64", "android-arm64", IOS_TARGET)
RUNTIME_LIB = "liblitert-lm.so"
# The last litert-lm-api whose library exports the TFLite C API (0.19 nightlies no longer do).
LITERT_LM_VERSION = "0.18.1"
_ANDROID_PLATFORM = "android-23"
_ANDROID_WHEEL_PLATFORM = "android_23_arm64_v8a"
# The bytes the Android runner links and a phone runs, pinned: litert_lm_api-0.18.1-py3-none-android_23_arm64_v8a
# .whl as PyPI serves it, and the liblitert-lm.so inside it (the wheel's RECORD lists the same digest), measured
# with `pip download --no-deps --only-binary=:all: --platform android_23_arm64_v8a --python-version 3.13
# litert-lm-api==0.18.1` and sha256sum.
ANDROID_WHEEL_SHA256 = "95826534a48f79a8fbcc6b47838d1a85cbfdebe7f1c7939d98780167a74fb1de"
ANDROID_LIB_SHA256 = "704b891fe25e9a526af717682e33b8f6310355be9e566821e2530499bffb1cc9"
# The same for the linux-arm64 runner (glibc ≥ 2.27): litert_lm_api-0.18.1-py3-none-manylinux_2_27_aarch64.whl and
# its liblitert-lm.so (133 MB; the RECORD's digest too), from `pip download --no-deps --only-binary=:all:
# --platform manylinux_2_27_aarch64 --python-version 3.11 litert-lm-api==0.18.1` and sha256sum.
_LINUX_ARM64_WHEEL_PLATFORM = "manylinux_2_27_aarch64"
LINUX_ARM64_WHEEL_SHA256 = "9c0e02bf7596693d9adbf6bfbb1bf08ae60c61abf9fa22dff19e5afe6af276f2"
LINUX_ARM64_LIB_SHA256 = "9a2ad189678a4c2148eb498ac4785272cb37f96dc07a3a6019553963b363c00c"
# Debian's cross compiler (apt-get install g++-aarch64-linux-gnu), named by the toolchain file.
LINUX_ARM64_TOOLCHAIN = NATIVE_DIR / "toolchains" / "linux-aarch64-gnu.cmake"
LINUX_ARM64_CXX = "aarch64-linux-gnu-g++"


@dataclasses.dataclass(frozen=True)
class _WheelLib:
    """Where an arm64 target's liblitert-lm.so comes from: a litert-lm-api wheel, both pinned."""

    name: str  # for messages: "Android", "Linux arm64"
    platform: str  # pip's --platform
    python_version: str  # pip's --python-version (the wheels are py3-none: any version that pip accepts)
    wheel_sha256: str
    lib_sha256: str


_WHEEL_LIBS = {
    "android-arm64": _WheelLib("Android", _ANDROID_WHEEL_PLATFORM, "3.13", ANDROID_WHEEL_SHA256, ANDROID_LIB_SHA256),
    "linux-arm64": _WheelLib("Linux arm64", _LINUX_ARM64_WHEEL_PLATFORM, "3.11", LINUX_ARM64_WHEEL_SHA256,
                             LINUX_ARM64_LIB_SHA256),
}


@dataclasses.dataclass(frozen=True)
class RunnerBuild:
    binary: Path  # for ios-arm64: the app's .ipa, or INSTALLED_APP (the app the device has)
    runtime_lib: Path | None  # push it next to the binary; None where the program holds it (the iOS app)
    target: str


def default_cache_dir() -> Path:
    """Where builds go: $LITERT_BENCH_CACHE/runner, else ~/.cache/litert-bench/runner."""
    return cache_root() / "runner"


def build_runner(target: str = "host", cache_dir: Path | None = None) -> RunnerBuild:
    """Build llm_runner for `target` ("host", "linux-arm64" or "android-arm64"), or reuse the cached build."""
    _check_target(target)
    if target == IOS_TARGET:
        raise RuntimeError(f"the iOS runner is an app, built with Xcode on a Mac, not here: build it as {IOS_README} "
                           "describes and pass the .ipa with --runner-app PATH.ipa")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    toolchain_files: list[Path] = []
    if target == "host":
        lib, cmake_args = host_runtime_lib(), []
    elif target == "linux-arm64":
        _check_cross_compiler()
        lib = arm64_runtime_lib(target, cache)
        toolchain_files = [LINUX_ARM64_TOOLCHAIN]
        cmake_args = [f"-DCMAKE_TOOLCHAIN_FILE={LINUX_ARM64_TOOLCHAIN}"]
    else:
        toolchain = _android_toolchain()
        lib = android_runtime_lib(cache)
        cmake_args = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", "-DANDROID_ABI=arm64-v8a",
                      f"-DANDROID_PLATFORM={_ANDROID_PLATFORM}"]
    out = cache / f"{target}-{_build_key(target, lib, cmake_args, toolchain_files)[:16]}"
    binary = out / "llm_runner"
    if not binary.is_file():
        # About a minute on 2 cores: a line before and after, as for conversions.
        print(f"building the {target} runner (cmake, {os.cpu_count() or 1} jobs) ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        _cmake_build(out, lib, cmake_args)
        print(f"built the {target} runner in {time.monotonic() - start:.1f} s → {binary}", file=sys.stderr,
              flush=True)
    return RunnerBuild(binary, lib, target)


def prebuilt_runner(binary: Path | str, target: str = "host", cache_dir: Path | None = None) -> RunnerBuild:
    """A runner built elsewhere; its runtime library is the liblitert-lm.so next to it, else the one
    build_runner would link for `target`."""
    _check_target(target)
    if target == IOS_TARGET:
        return ios_runner(binary)
    binary = Path(binary).resolve()
    if not binary.is_file():
        raise FileNotFoundError(f"runner binary '{binary}' does not exist")
    lib = binary.with_name(RUNTIME_LIB)
    if not lib.is_file():
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        lib = host_runtime_lib() if target == "host" else arm64_runtime_lib(target, cache)
    return RunnerBuild(binary, lib, target)


def ios_runner(app: Path | str | None = None) -> RunnerBuild:
    """The iOS runner: the app package (.ipa) given, which the device installs when it lacks it or has another
    build; without one, the runner app the device has installed (its absence fails the cell, saying how to build
    and pass one)."""
    if app is None:
        return RunnerBuild(INSTALLED_APP, None, IOS_TARGET)
    app = Path(app).resolve()
    if app.suffix != ".ipa":
        raise ValueError(f"--runner-app {app}: the iOS runner is an app package (.ipa; {IOS_README})")
    read_ipa(app)  # a zip with the runner app's Info.plist, checked before any device is touched
    return RunnerBuild(app, None, IOS_TARGET)


def runner_for_target(target: str, runner_bin: Path | None = None, runner_app: Path | None = None) -> RunnerBuild:
    """The runner a device of `target` runs: iOS devices the app (--runner-app, else the installed one), the others
    --runner-bin when given, else the cached build."""
    if target == IOS_TARGET:
        return ios_runner(runner_app)
    return prebuilt_runner(runner_bin, target) if runner_bin else build_runner(target)


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
    """The Android arm64 liblitert-lm.so from the litert-lm-api wheel, downloaded once into `cache` and checked
    against its pinned sha256 (a cached copy too: one that differs is downloaded again)."""
    return arm64_runtime_lib("android-arm64", cache)


def arm64_runtime_lib(target: str, cache: Path, timeout: float = 600) -> Path:
    """The liblitert-lm.so an arm64 target links and runs, from its litert-lm-api wheel, downloaded once into
    `cache` and checked against its pinned sha256 (a cached copy too: one that differs is downloaded again)."""
    pin = _WHEEL_LIBS[target]
    lib = cache / f"litert-lm-{LITERT_LM_VERSION}-{pin.platform}" / RUNTIME_LIB
    if lib.is_file() and _file_sha256(lib).hex() == pin.lib_sha256:
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", pin.platform, "--python-version", pin.python_version,
               f"litert-lm-api=={LITERT_LM_VERSION}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"downloading the {pin.name} litert-lm-api wheel took over {timeout:g} s: "
                               f"{' '.join(cmd)}") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download the {pin.name} litert-lm-api wheel ({' '.join(cmd)}):\n"
                               f"{tail(proc.stdout + proc.stderr, 40)}")
        install_wheel_lib(target, wheels[0], lib)
    return lib


def install_android_lib(wheel: Path, lib: Path) -> None:
    """Extract liblitert-lm.so from the Android wheel to `lib`, once the wheel and the library match their pins."""
    install_wheel_lib("android-arm64", wheel, lib)


def install_wheel_lib(target: str, wheel: Path, lib: Path) -> None:
    """Extract liblitert-lm.so from an arm64 target's wheel to `lib`, once the wheel and the library match their
    pins."""
    pin = _WHEEL_LIBS[target]
    _check_sha256(wheel, pin.wheel_sha256, f"the {pin.name} litert-lm-api=={LITERT_LM_VERSION} wheel")
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        extracted = Path(tmp) / RUNTIME_LIB
        with zipfile.ZipFile(wheel) as archive, archive.open(f"litert_lm/{RUNTIME_LIB}") as src, \
                extracted.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)  # 133 MB: streamed, not held in memory
        _check_sha256(extracted, pin.lib_sha256, f"{RUNTIME_LIB} from {wheel.name}")
        extracted.chmod(0o755)
        os.replace(extracted, lib)  # atomic: a concurrent caller sees all of it or nothing


def _check_sha256(path: Path, pinned: str, what: str) -> None:
    got = _file_sha256(path).hex()
    if got != pinned:
        raise RuntimeError(f"{what} is not the pinned one: sha256 {got}, expected {pinned} ({path}); "
                           "nothing was installed")


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown runner target {target!r}; known: {', '.join(TARGETS)}")


def _check_cross_compiler() -> None:
    if shutil.which(LINUX_ARM64_CXX) is None:
        raise RuntimeError(f"no linux-arm64 runner: building llm_runner for linux-arm64 needs Debian's aarch64 cross "
                           f"compiler, and {LINUX_ARM64_CXX} is not on PATH; install it (apt-get install "
                           "g++-aarch64-linux-gnu), or pass --runner-bin with an aarch64 llm_runner built elsewhere")


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


def _build_key(target: str, lib: Path, cmake_args: list[str], toolchain_files: list[Path] = ()) -> str:
    digest = hashlib.sha256("\0".join([target, *cmake_args, ""]).encode())
    sources = [NATIVE_DIR / "CMakeLists.txt", *sorted((NATIVE_DIR / "src").iterdir()), *toolchain_files]
    for path in sources:
        digest.update(f"{path.relative_to(NATIVE_DIR)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(_file_sha256(lib))
    # The binary records the library's folder in its RUNPATH (how the host finds it): the same bytes in another
    # virtual environment (a second clone, a venv made anew) need a build of their own, or the cached one would
    # look for the library where an old, maybe deleted, environment had it.
    digest.update(f"\0{lib.resolve().parent}".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


_BUILD_TIMEOUT_S = 1800  # one CMake step (configure, or the whole build)


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
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"llm_runner build took over {_BUILD_TIMEOUT_S} s: {' '.join(cmd)}") from None
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

