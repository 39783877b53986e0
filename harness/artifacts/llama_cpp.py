"""llama.cpp, the peer runtime: its source and its `llama-bench` + `llama-quantize` builds, cached by content.

The source is the llama.cpp that `llama-cpp-python` vendors (one pinned sdist from PyPI, checked against its
sha256): PyPI's files never change, so a version names exactly one tree, and `pip download` is the only fetch the
harness needs. The sdist is extracted once into the harness cache (its `vendor/llama.cpp`, which also holds
`convert_hf_to_gguf.py` and `gguf-py`, read by harness/artifacts/gguf.py).

Targets, as for our own runner (device_runners/runners/native.py): `host` (this machine's compiler, the CPU
features its /proc/cpuinfo shows), `linux-arm64` (Debian's aarch64 cross compiler through our runner's toolchain
file) and `android-arm64` (the NDK at $ANDROID_NDK_HOME). The build never uses GGML_NATIVE: a native build would
also enable AMX, whose kernels segfault in the VMs this runs in (`ggml_backend_amx_mul_mat`, FIELD_NOTES), and its
key could not say which features it took. Each feature is instead named ON or OFF from the CPU's flags, so the
cache key (source sha256 + target + cmake arguments) tells one CPU's build from another's.

About 4 minutes on 2 cores; a line before and after, to `log`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import filelock

from harness.common.files import REPO_ROOT, cache_root, sha256_file
from harness.common.text import tail

# The one pin: llama-cpp-python's sdist on PyPI, and its sha256 (`pip download --no-deps --no-binary :all:
# llama-cpp-python==0.3.36`, then sha256sum). It vendors llama.cpp 0.5.0-dev.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# The llama.cpp it vendors: the sdist's CHANGELOG says "update llama.cpp to ggml-org/llama.cpp@0c1e57098", llama.cpp's
# release b11312. The sdist has no git history, so without these the binaries say "build 0, commit unknown" (or,
# with the cache inside some git work tree, that tree's commit): llama-bench reports them as its build.
LLAMA_CPP_COMMIT = "0c1e57098"
LLAMA_CPP_BUILD_NUMBER = 11312
TARGETS = ("host", "linux-arm64", "android-arm64")
BINARIES = ("llama-bench", "llama-quantize")
# Our runner's cross toolchain (Debian's aarch64-linux-gnu-g++), shared so both runtimes build the same way.
LINUX_ARM64_TOOLCHAIN = REPO_ROOT / "device_runners" / "native" / "toolchains" / "linux-aarch64-gnu.cmake"
LINUX_ARM64_CXX = "aarch64-linux-gnu-g++"
# The arm64 devices' baseline: dot product and fp16 arithmetic (Cortex-A55/A76 and later: every phone profile
# and the Raspberry Pi 5). Not i8mm or SVE, which older cores lack: a binary must run on every arm64 device.
ARM64_ARCH = "armv8.2-a+dotprod+fp16"
ANDROID_PLATFORM = "android-28"
# Every build: no network code (model downloads), only the two programs, ggml and llama linked in statically (the
# binaries are pushed to devices alone), the CPU features spelled out rather than probed (GGML_NATIVE=OFF), and
# the build's number and commit given rather than read from git.
_COMMON_ARGS = ("-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DGGML_NATIVE=OFF",
                "-DBUILD_SHARED_LIBS=OFF", f"-DLLAMA_BUILD_COMMIT={LLAMA_CPP_COMMIT}",
                f"-DLLAMA_BUILD_NUMBER={LLAMA_CPP_BUILD_NUMBER}")
# AMX: off on every build (its kernels segfault in these VMs, whatever the CPU claims).
_AMX_OFF = ("-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF")
# ggml's AVX-512 option compiles with -mavx512f/cd/vl/dq/bw: all five must be there.
_AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"})
EXTRA_CMAKE_ARGS_ENV = "LITERT_BENCH_LLAMA_CPP_EXTRA_CMAKE_ARGS"
_PIP_TIMEOUT_S = 600
_BUILD_TIMEOUT_S = 3600  # one CMake step (configure, or the whole build)


class LlamaCppBuildError(RuntimeError):
    """llama.cpp could not be fetched or built; the message quotes the tool's last lines."""


class ToolchainMissing(LlamaCppBuildError, ValueError):
    """A target this machine cannot build for (no cross compiler, no NDK): a build error, and also the ValueError
    an unsupported target is, so a caller may skip it as one."""


@dataclasses.dataclass(frozen=True)
class LlamaCppBuild:
    bench: Path  # llama-bench
    quantize: Path  # llama-quantize (runs on the host: only a host build's can quantize here)
    source: Path  # the vendored llama.cpp: convert_hf_to_gguf.py, gguf-py/
    version: str  # llama-cpp-python's version, which names the source
    target: str


def default_cache_dir() -> Path:
    """$LITERT_BENCH_LLAMA_CPP_CACHE, else the harness cache's llama.cpp folder ($LITERT_BENCH_CACHE/llama.cpp,
    ~/.cache/litert-bench/llama.cpp), read at call time (the tests move the cache). The variable lets one 4-minute
    build serve caches that are otherwise started empty (each test session's, a second clone's)."""
    return Path(os.environ.get("LITERT_BENCH_LLAMA_CPP_CACHE") or cache_root() / "llama.cpp")


def ensure_llama_cpp(target: str = "host", log: TextIO | None = None, *, cache_dir: Path | None = None,
                     extra_cmake_args: Sequence[str] = ()) -> LlamaCppBuild:
    """llama-bench and llama-quantize for `target`, built once per (source, target, CMake arguments) and reused.

    `extra_cmake_args`, then $LITERT_BENCH_LLAMA_CPP_EXTRA_CMAKE_ARGS (split as a shell would), go after the
    harness's own and into the key: a way to try another option, and the tests' way to make a build fail (the
    variable reaches the pytest and CLI children a test starts)."""
    log = log or sys.stderr
    if target not in TARGETS:
        raise ValueError(f"unknown llama.cpp target {target!r}; known: {', '.join(TARGETS)}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    extra = [*extra_cmake_args, *shlex.split(os.environ.get(EXTRA_CMAKE_ARGS_ENV, ""))]
    args = [*cmake_args(target), *extra]  # first: a missing toolchain is said before any download
    source, sdist_sha256 = ensure_source(cache)
    key = build_key(sdist_sha256, target, args)
    out = cache / f"{target}-{key[:16]}"
    build = LlamaCppBuild(out / "bin" / BINARIES[0], out / "bin" / BINARIES[1], source, LLAMA_CPP_PYTHON_VERSION,
                          target)
    if not build.bench.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(f"{out}.lock"):  # two workers wanting one build: one builds, the other waits
            if not build.bench.is_file():
                _build(source, out, target, args, log)
    return build


def build_key(sdist_sha256: str, target: str, args: Sequence[str]) -> str:
    """What makes the binaries' bytes: the source package, the target and every CMake argument (the CPU's
    features among them). A toolchain file's path is in the arguments; its content is not (it is our own, fixed)."""
    return hashlib.sha256("\0".join([sdist_sha256, target, *args]).encode()).hexdigest()


# --- the source ---------------------------------------------------------------------------------------------------

def ensure_source(cache: Path) -> tuple[Path, str]:
    """The vendored llama.cpp folder, extracted once into `cache`, and the sdist's sha256."""
    folder = cache / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"
    source = folder / "llama.cpp"
    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(folder / "fetch.lock"):
        if not (source / "CMakeLists.txt").is_file():
            sdist = _download_sdist(folder)
            _extract_vendored(sdist, source)
            sdist.unlink()  # 77 MB the cache does not need once extracted
    return source, SDIST_SHA256


def _download_sdist(folder: Path) -> Path:
    """`pip download` of the pinned sdist into `folder`, its sha256 checked."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=_PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise LlamaCppBuildError(f"downloading llama-cpp-python took over {_PIP_TIMEOUT_S} s: "
                                     f"{' '.join(cmd)}") from None
        found = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not found:
            raise LlamaCppBuildError(f"could not download llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} "
                                     f"({' '.join(cmd)}):\n{tail(proc.stdout + proc.stderr, 40)}")
        got = sha256_file(found[0])
        if got != SDIST_SHA256:
            raise LlamaCppBuildError(f"{found[0].name} is not the pinned one: sha256 {got}, expected "
                                     f"{SDIST_SHA256}; nothing was extracted")
        sdist = folder / found[0].name
        os.replace(found[0], sdist)
    return sdist


def _extract_vendored(sdist: Path, source: Path) -> None:
    """Extract the sdist's vendor/llama.cpp to `source`, through a scratch folder renamed in one step."""
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    scratch = Path(tempfile.mkdtemp(prefix="extract.", dir=source.parent))
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name[len(prefix):]
            archive.extractall(scratch, members=members, filter="data")
        if not (scratch / "CMakeLists.txt").is_file():
            raise LlamaCppBuildError(f"{sdist.name} holds no {prefix}CMakeLists.txt")
        shutil.rmtree(source, ignore_errors=True)  # a half-extracted folder from an interrupted run
        scratch.rename(source)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- the CMake arguments ------------------------------------------------------------------------------------------

def cmake_args(target: str) -> list[str]:
    """Every CMake argument of a target's build: the common ones, its toolchain, its CPU features."""
    if target == "host":
        return [*_COMMON_ARGS, *host_cpu_args(platform.machine(), cpu_flags())]
    if target == "linux-arm64":
        _check_cross_compiler()
        return [*_COMMON_ARGS, f"-DCMAKE_TOOLCHAIN_FILE={LINUX_ARM64_TOOLCHAIN}", f"-DGGML_CPU_ARM_ARCH={ARM64_ARCH}"]
    return [*_COMMON_ARGS, f"-DCMAKE_TOOLCHAIN_FILE={android_toolchain()}", "-DANDROID_ABI=arm64-v8a",
            f"-DANDROID_PLATFORM={ANDROID_PLATFORM}", f"-DGGML_CPU_ARM_ARCH={ARM64_ARCH}"]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags (x86 `flags`, arm64 `Features`); empty where /proc/cpuinfo is unreadable."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def host_cpu_args(machine: str, flags: set[str]) -> list[str]:
    """ggml's CPU options for a host with these /proc/cpuinfo flags: each x86 extension ON only where the CPU has
    it (a binary that runs here, whatever CPU the VM got), AMX always OFF; on arm64 the -march its flags allow."""
    if machine in ("aarch64", "arm64"):
        arch = "armv8.2-a" + "".join(f"+{ext}" for flag, ext in (("asimddp", "dotprod"), ("asimdhp", "fp16"),
                                                                 ("i8mm", "i8mm")) if flag in flags)
        return [f"-DGGML_CPU_ARM_ARCH={arch}"]
    if machine not in ("x86_64", "AMD64", "i686"):
        return []  # ggml's defaults for the architecture
    avx512 = _AVX512_FLAGS.issubset(flags)
    options = {
        "GGML_SSE42": "sse4_2" in flags,
        "GGML_AVX": "avx" in flags,
        "GGML_AVX2": "avx2" in flags,
        "GGML_BMI2": "bmi2" in flags,
        "GGML_FMA": "fma" in flags,
        "GGML_F16C": "f16c" in flags,
        "GGML_AVX_VNNI": "avx_vnni" in flags,
        "GGML_AVX512": avx512,
        "GGML_AVX512_VBMI": avx512 and "avx512vbmi" in flags,
        "GGML_AVX512_VNNI": avx512 and "avx512_vnni" in flags,
        "GGML_AVX512_BF16": avx512 and "avx512_bf16" in flags,
    }
    return [f"-D{name}={'ON' if on else 'OFF'}" for name, on in options.items()] + list(_AMX_OFF)


def _check_cross_compiler() -> None:
    if shutil.which(LINUX_ARM64_CXX) is None:
        raise ToolchainMissing(f"building llama.cpp for linux-arm64 needs Debian's aarch64 cross compiler, and "
                                 f"{LINUX_ARM64_CXX} is not on PATH (apt-get install g++-aarch64-linux-gnu)")


def android_toolchain() -> Path:
    """The NDK's CMake toolchain file, from $ANDROID_NDK_HOME."""
    ndk = os.environ.get("ANDROID_NDK_HOME")
    if not ndk:
        raise ToolchainMissing("building llama.cpp for android-arm64 needs the Android NDK, and ANDROID_NDK_HOME "
                                 "is not set: set ANDROID_NDK_HOME to the NDK directory (the one holding "
                                 "build/cmake/android.toolchain.cmake)")
    toolchain = Path(ndk) / "build" / "cmake" / "android.toolchain.cmake"
    if not toolchain.is_file():
        raise ToolchainMissing(f"ANDROID_NDK_HOME={ndk} has no build/cmake/android.toolchain.cmake")
    return toolchain


# --- the build ----------------------------------------------------------------------------------------------------

def _build(source: Path, out: Path, target: str, args: list[str], log: TextIO) -> None:
    """Configure and build in a scratch folder beside `out`, keep the two binaries, rename it to `out`."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise LlamaCppBuildError("cmake not found on PATH; install it (apt-get install cmake or pip install cmake)")
    jobs = os.cpu_count() or 1
    print(f"building llama.cpp ({LLAMA_CPP_PYTHON_VERSION}) for {target}: {', '.join(BINARIES)} "
          f"(cmake, {jobs} jobs) ...", file=log, flush=True)
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f"{out.name}.", dir=out.parent))
    try:
        build_dir = scratch / "build"
        configure = [cmake, "-S", str(source), "-B", str(build_dir), *args]
        compile_ = [cmake, "--build", str(build_dir), "--target", *BINARIES, "--parallel", str(jobs)]
        for cmd in (configure, compile_):
            _run_step(cmd)
        (scratch / "bin").mkdir()
        for name in BINARIES:
            shutil.copy2(build_dir / "bin" / name, scratch / "bin" / name)
        shutil.rmtree(build_dir)  # objects: hundreds of MB the cache does not need
        shutil.rmtree(out, ignore_errors=True)  # a folder left by an interrupted run
        scratch.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"built llama.cpp for {target} in {time.monotonic() - start:.1f} s → {out / 'bin'}", file=log, flush=True)


def _run_step(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=_BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise LlamaCppBuildError(f"llama.cpp build step took over {_BUILD_TIMEOUT_S} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise LlamaCppBuildError(f"llama.cpp build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                                 f"{tail(proc.stdout + proc.stderr, 40)}")
