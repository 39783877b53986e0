"""llama.cpp as a measured runtime: its host build (once per session, cached), our tiny TinyLlama's weights
converted to GGUF F16/Q8_0/Q4_0 (every matrix at the asked type), llama-bench's figures on the host read into a
RunnerReport, and the ways each step says it cannot: a recipe without a counterpart, a checkpoint the converter
refuses, a build that fails, a llama-bench that fails."""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path

import pytest

from device_runners.device import open_device
from device_runners.runners.llama_bench import LlamaBenchError, llama_bench_run, run_llama_bench
from device_runners.runners.report import RunnerReport
from harness.artifacts import llama_cpp
from harness.artifacts.gguf import ConverterRefused, NoCounterpart, converter_reason, ensure_gguf, gguf_type
from harness.artifacts.llama_cpp import LlamaCppBuild, LlamaCppBuildError, ensure_llama_cpp
from models.hf_reference import save_reference
from models.registry import get_spec

SPEC = get_spec("tinyllama", "tiny", None, 1234)
VOCAB = SPEC.config().vocab_size
PREFILL, DECODE, REPS = 32, 8, 2


@pytest.fixture(scope="session")
def llama_build() -> LlamaCppBuild:
    """The host build, in the session's cache (LITERT_BENCH_CACHE, which the pytest and CLI children a test starts
    share): about 4 minutes on 2 cores the first time in a session, nothing after."""
    return ensure_llama_cpp("host")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our seeded random weights as a transformers checkpoint (what models/hf_export.py will write)."""
    return save_reference(SPEC.family, SPEC.size, SPEC.seed, tmp_path_factory.mktemp("tinyllama-hf"))


@pytest.fixture(scope="session")
def gguf_module(llama_build: LlamaCppBuild):
    """gguf-py from the build's own tree (the converter's), to read what was written."""
    sys.path.insert(0, str(llama_build.source / "gguf-py"))
    try:
        return importlib.import_module("gguf")
    finally:
        sys.path.remove(str(llama_build.source / "gguf-py"))


def tensor_types(gguf_module, path: Path) -> dict[str, tuple[str, int]]:
    """{tensor name: (type name, number of dimensions)}."""
    reader = gguf_module.GGUFReader(path)
    return {t.name: (t.tensor_type.name, len([d for d in t.shape if d > 1] or [1])) for t in reader.tensors}


def test_the_build_is_cached_and_its_binaries_run(llama_build: LlamaCppBuild):
    assert llama_build.bench.is_file() and llama_build.quantize.is_file()
    assert (llama_build.source / "convert_hf_to_gguf.py").is_file() and (llama_build.source / "gguf-py").is_dir()
    assert llama_build.version == llama_cpp.LLAMA_CPP_PYTHON_VERSION and llama_build.target == "host"
    log = io.StringIO()
    assert ensure_llama_cpp("host", log) == llama_build
    assert log.getvalue() == ""  # nothing built, nothing said


@pytest.mark.parametrize(("quant", "expected"), [("fp16", "F16"), ("dynamic_int8", "Q8_0"),
                                                 ("dynamic_int4_block32", "Q4_0")])
def test_gguf_holds_every_matrix_at_the_asked_type(quant, expected, llama_build, checkpoint, gguf_module):
    path = ensure_gguf(checkpoint, quant, VOCAB, llama_build)
    types = tensor_types(gguf_module, path)
    matrices = {name: kind for name, (kind, dims) in types.items() if dims == 2}
    # token_embd, output and the 7 matrices of each of the 2 layers
    assert len(matrices) == 2 + 7 * SPEC.family.hf_config("tiny")["num_hidden_layers"], types
    assert set(matrices.values()) == {expected}, matrices
    assert {kind for kind, dims in types.values() if dims == 1} == {"F32"}  # the norms stay float
    reader = gguf_module.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == VOCAB
    log = io.StringIO()
    assert ensure_gguf(checkpoint, quant, VOCAB, llama_build, log) == path and log.getvalue() == ""  # cached


def test_recipes_map_to_llama_cpp_types(llama_build, checkpoint):
    assert [gguf_type(q) for q in ("none", "fp16", "dynamic_int8", "weight_only_int8", "dynamic_int4_block32")] == [
        "F16", "F16", "Q8_0", "Q8_0", "Q4_0"]
    assert ensure_gguf(checkpoint, "none", VOCAB, llama_build) == ensure_gguf(checkpoint, "fp16", VOCAB, llama_build)
    with pytest.raises(NoCounterpart, match="dynamic_int4_block128") as info:
        ensure_gguf(Path("/nonexistent"), "dynamic_int4_block128", VOCAB, llama_build)  # refused before any work
    assert "Q4_0" in info.value.reason


def test_llama_bench_on_the_host(llama_build, checkpoint):
    gguf = ensure_gguf(checkpoint, "dynamic_int4_block32", VOCAB, llama_build)
    device = open_device("host")
    cpus = device.cpus_for(1)
    report = run_llama_bench(device, llama_build, gguf, PREFILL, DECODE, threads=1, reps=REPS, cpus=cpus,
                             timeout=300)
    print(f"llama-bench, tiny TinyLlama Q4_0, 1 thread: {report.samples}")
    assert len(report.samples) == REPS
    for s in report.samples:
        assert s.prefill_s > 0 and s.decode_s > 0 and s.prefill_tok_s > 0 and s.decode_tok_s > 0
        assert s.prefill_tok_s == pytest.approx(PREFILL / s.prefill_s, rel=1e-3)
        assert s.decode_tok_s == pytest.approx(DECODE / s.decode_s, rel=1e-3)
        assert s.ttft_ms == pytest.approx(s.prefill_s * 1000)
    assert (report.prefill_len, report.decode_len, report.kv_len, report.threads) == (PREFILL, DECODE,
                                                                                      PREFILL + DECODE, 1)
    assert (report.runner, report.api, report.runtime) == ("llama-bench", "llama.cpp", "llama.cpp")
    assert report.runner_version == llama_cpp.LLAMA_CPP_PYTHON_VERSION
    assert report.runtime_version == f"{llama_cpp.LLAMA_CPP_BUILD_NUMBER} ({llama_cpp.LLAMA_CPP_COMMIT})"
    assert report.model == str(gguf.resolve()) and report.model_bytes == gguf.stat().st_size
    assert 0 < report.weight_bytes < report.model_bytes  # the tensors, without the file's metadata
    assert report.init_ms is None and report.kv_cache_bytes is None and report.tokens == [] and report.xnnpack is None
    assert RunnerReport.from_json(report.to_json()) == report  # the one report type, as every runner's


def test_llama_bench_run_says_how_it_measured(llama_build, checkpoint):
    gguf = ensure_gguf(checkpoint, "dynamic_int8", VOCAB, llama_build)
    device = open_device("host")
    run = llama_bench_run(device, llama_build, gguf, 16, 4, threads=1, reps=1, cpus=device.cpus_for(1), timeout=120)
    prefill, decode = run.command.split("; ")
    assert prefill.endswith("-p 16 -n 0") and decode.endswith("-p 0 -n 4 -d 16")
    assert run.device_command.count("taskset") == 2  # both pinned by the transport, under its timeout
    assert len(run.report.samples) == 1 and run.report.kv_len == 20


def test_llama_bench_failure_quotes_its_stderr(llama_build, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file" * 100)
    device = open_device("host")
    with pytest.raises(LlamaBenchError, match="exited with code") as info:
        run_llama_bench(device, llama_build, broken, PREFILL, DECODE, threads=1, reps=1, cpus=device.cpus_for(1),
                        timeout=60)
    assert "failed to load model" in str(info.value)


def test_converter_refusal_surfaces_the_converters_line(llama_build, checkpoint, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").symlink_to(checkpoint / "model.safetensors")
    config = (checkpoint / "config.json").read_text().replace('"LlamaForCausalLM"', '"NoSuchModelForCausalLM"')
    (broken / "config.json").write_text(config)
    with pytest.raises(ConverterRefused) as info:
        ensure_gguf(broken, "dynamic_int8", VOCAB, llama_build)
    assert info.value.reason == "Model NoSuchModelForCausalLM is not supported"
    assert info.value.reason in str(info.value)


def test_a_family_whose_tokenizer_the_converter_cannot_take_is_refused(llama_build, tmp_path):
    # Phi-2 reads a GPT-2 style tokenizer (tokenizer.json), not the SentencePiece model our models get.
    phi2 = get_spec("phi2", "tiny", None, 1234)
    folder = save_reference(phi2.family, phi2.size, phi2.seed, tmp_path / "phi2")
    with pytest.raises(ConverterRefused) as info:
        ensure_gguf(folder, "dynamic_int8", phi2.config().vocab_size, llama_build, io.StringIO())
    assert info.value.reason.startswith("AssertionError at `assert ") and "vocab" in info.value.reason
    assert "Traceback" in info.value.stderr


def test_converter_reason_is_the_last_exception_line():
    traceback = ("INFO:hf-to-gguf:Loading model: x\nTraceback (most recent call last):\n  File \"c.py\", line 1\n"
                 "    raise KeyError\nKeyError: 'tokenizer.json'\n")
    assert converter_reason(traceback) == "KeyError: 'tokenizer.json'"
    bare = ('Traceback (most recent call last):\n  File "/x/conversion/base.py", line 9, in get_vocab\n'
            "    assert n < vocab_size  # ty: ignore\n           ^^^^^^\nAssertionError\n")
    assert converter_reason(bare) == "AssertionError at `assert n < vocab_size` (base.py:9, in get_vocab)"
    assert converter_reason("ERROR:hf-to-gguf:Model Foo is not supported\n") == "Model Foo is not supported"
    assert converter_reason("something else\nentirely\n") == "something else\nentirely"


def test_build_failure_quotes_the_build_log(llama_build):
    # A compiler that does not exist: CMake's configure step fails in a second, the source is the cached one.
    with pytest.raises(LlamaCppBuildError, match="llama.cpp build failed") as info:
        ensure_llama_cpp("host", io.StringIO(), extra_cmake_args=["-DCMAKE_C_COMPILER=/nonexistent/cc"])
    assert "/nonexistent/cc" in str(info.value).split("\n", 1)[1]  # the log's tail, not only the command
    assert not [p for p in llama_build.bench.parents[2].glob("host-*.*") if p.is_dir()]  # no scratch left behind


def test_extra_cmake_args_reach_child_processes_through_the_environment(llama_build, monkeypatch):
    monkeypatch.setenv(llama_cpp.EXTRA_CMAKE_ARGS_ENV, "-DCMAKE_CXX_FLAGS=-fno-such-flag")
    with pytest.raises(LlamaCppBuildError) as info:
        ensure_llama_cpp("host", io.StringIO())
    complaint = [line for line in str(info.value).splitlines() if "unrecognized command-line option" in line]
    assert complaint and "-fno-such-flag" in complaint[0]  # the compiler's own words, from the build log's tail


def test_cpu_features_follow_the_hosts_flags():
    xeon = {"sse4_2", "avx", "avx2", "bmi2", "fma", "f16c", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
            "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}
    args = llama_cpp.host_cpu_args("x86_64", xeon)
    assert {"-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON",
            "-DGGML_AVX512_BF16=ON", "-DGGML_AVX_VNNI=OFF"} <= set(args)
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)  # AMX: never
    epyc = {"sse4_2", "avx", "avx2", "bmi2", "fma", "f16c", "avx_vnni"}
    args = llama_cpp.host_cpu_args("x86_64", epyc)
    assert {"-DGGML_AVX512=OFF", "-DGGML_AVX512_VNNI=OFF", "-DGGML_AVX_VNNI=ON", "-DGGML_AVX2=ON"} <= set(args)
    # AVX-512 VNNI without the whole AVX-512 base ggml compiles with: off
    assert "-DGGML_AVX512_VNNI=OFF" in llama_cpp.host_cpu_args("x86_64", epyc | {"avx512f", "avx512_vnni"})
    assert llama_cpp.host_cpu_args("aarch64", {"asimd", "asimddp", "asimdhp"}) == [
        "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16"]
    # A different CPU, a different build
    assert llama_cpp.build_key("s", "host", llama_cpp.host_cpu_args("x86_64", xeon)) != llama_cpp.build_key(
        "s", "host", llama_cpp.host_cpu_args("x86_64", epyc))


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert llama_cpp.cpu_flags(cpuinfo) == {"fpu", "avx2", "fma"}
    assert llama_cpp.cpu_flags(tmp_path / "missing") == set()


def test_android_build_names_the_ndk_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    with pytest.raises(llama_cpp.ToolchainMissing, match="ANDROID_NDK_HOME") as info:
        ensure_llama_cpp("android-arm64", cache_dir=tmp_path)
    assert isinstance(info.value, LlamaCppBuildError) and isinstance(info.value, ValueError)  # either catch works
    assert not any(tmp_path.iterdir())  # said before any download
    with pytest.raises(ValueError, match="unknown llama.cpp target"):
        ensure_llama_cpp("ios-arm64", cache_dir=tmp_path)
