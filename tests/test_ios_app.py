"""The iOS runner app (device_runners/native/ios/), as far as Linux can check it: no Xcode or iOS SDK exists here,
so nothing of the app is compiled. What is checked: the app compiles exactly the runner core that CMake builds;
it spells the file names, bundle id and executable that the host's contract (transports/ios_contract.py) does;
it enters the core through llm_runner::RunMain; its Info.plist, export options and entitlements are valid plists
with what the app needs; the build scripts and the README agree; and the core's iOS configuration (no
CompiledModel, no fork: the two switches engine.h and bandwidth_probe.h set from TARGET_OS_IPHONE) builds
warning-free here, links against nothing but the TFLite C API functions that build_tflite.sh requires of the
TensorFlowLiteC framework, and runs a benchmark on a tiny model."""

from __future__ import annotations

import json
import os
import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from device_runners.runners.native import RunnerBuild, build_runner, host_runtime_lib
from device_runners.transports import ios_contract

REPO = Path(__file__).resolve().parent.parent
NATIVE = REPO / "device_runners" / "native"
IOS = NATIVE / "ios"
APP_SOURCES = sorted((IOS / "App").glob("*.mm"))
# The iOS configuration of the core, forced on Linux (on iOS, TARGET_OS_IPHONE sets both).
IOS_DEFINES = ("-DLLM_RUNNER_HAS_COMPILED_MODEL=0", "-DLLM_RUNNER_CAN_FORK=0")
PREFILL, KV_LEN = 32, 128  # tests/test_runner.py's tiny model, so that one conversion serves both


def cmake_core_files() -> list[str]:
    """CMakeLists.txt's add_executable(llm_runner ...) sources, as paths relative to native/."""
    text = (NATIVE / "CMakeLists.txt").read_text()
    match = re.search(r"add_executable\(\s*llm_runner\s+([^)]*)\)", text)
    assert match, "CMakeLists.txt has no add_executable(llm_runner ...)"
    return match.group(1).split()


def project() -> dict:
    return yaml.safe_load((IOS / "project.yml").read_text())


def app_target() -> dict:
    return project()["targets"]["LiteRTBenchRunner"]


def app_constants() -> dict[str, str]:
    """App/RunnerApp.h's `inline constexpr char kName[] = "value";` constants."""
    text = (IOS / "App" / "RunnerApp.h").read_text()
    return dict(re.findall(r'inline constexpr char (k\w+)\[\] = "([^"]*)";', text))


def app_text() -> str:
    return "\n".join(p.read_text() for p in [IOS / "App" / "RunnerApp.h", *APP_SOURCES])


def test_project_compiles_exactly_the_cmake_core_less_main():
    core = cmake_core_files()
    assert "src/main.cc" in core
    paths = [s["path"] if isinstance(s, dict) else s for s in app_target()["sources"]]
    from_src = [p for p in paths if p.startswith("../src/")]
    assert len(from_src) == len(set(from_src)), f"project.yml lists a core file twice: {from_src}"
    assert sorted(p.removeprefix("../") for p in from_src) == sorted(set(core) - {"src/main.cc"})
    for path in from_src:
        assert (IOS / path).is_file(), path
    # Besides the core, only the app's own folder, which holds its Objective-C++ (main.mm is its entry point).
    assert sorted(set(paths) - set(from_src)) == ["App"]
    assert [p.name for p in APP_SOURCES] == ["RunnerApp.mm", "main.mm"]


def test_project_builds_a_cxx17_app_with_the_contracts_bundle_id_and_executable():
    settings = app_target()["settings"]["base"]
    assert app_target()["type"] == "application" and app_target()["platform"] == "iOS"
    assert settings["PRODUCT_BUNDLE_IDENTIFIER"] == ios_contract.BUNDLE_ID
    assert settings["PRODUCT_NAME"] == ios_contract.EXECUTABLE
    assert settings["CLANG_CXX_LANGUAGE_STANDARD"] == "c++17"
    assert "set(CMAKE_CXX_STANDARD 17)" in (NATIVE / "CMakeLists.txt").read_text()
    assert float(app_target()["deploymentTarget"]) >= 15.0
    assert settings["INFOPLIST_FILE"] == "Info.plist"
    assert "$(SRCROOT)/../src" in settings["HEADER_SEARCH_PATHS"]
    assert project()["settings"]["base"]["DEVELOPMENT_TEAM"] == "${DEVELOPMENT_TEAM}"  # from the environment


def test_app_spells_the_contracts_file_names():
    names = app_constants()
    # The app writes straight into Documents: every file of the contract is a direct child of it.
    for path in (ios_contract.REQUEST, ios_contract.RESULT, ios_contract.STDERR, ios_contract.DONE):
        assert Path(path).parent == Path(ios_contract.DOCUMENTS), path
    assert (names["kRequestFile"], names["kResultFile"], names["kStderrFile"], names["kDoneFile"]) == tuple(
        Path(p).name for p in (ios_contract.REQUEST, ios_contract.RESULT, ios_contract.STDERR, ios_contract.DONE))
    assert names["kThermalFile"] == Path(ios_contract.THERMAL).name
    assert f"Documents/{names['kThermalFile']}" in (IOS / "README.md").read_text()
    # The implementation writes through the constants, and `done` in done_text's format.
    code = (IOS / "App" / "RunnerApp.mm").read_text()
    for name in ("kRequestFile", "kResultFile", "kStderrFile", "kThermalFile", "kDoneFile", "kProgramName"):
        assert name in code, name
    assert ios_contract.done_text(3, "run-7") == "3 run-7\n"
    assert 'WriteWhole(kDoneFile, std::to_string(code) + " " + request.run_id + "\\n");' in code
    # ...after everything else it writes.
    assert code.rindex("WriteWhole(kDoneFile") > max(code.rindex("WriteWhole(kThermalFile"),
                                                     code.rindex("FlushToDisk(stdout)"))
    assert names["kProgramName"] == "llm_runner"
    for state in ("nominal", "fair", "serious", "critical"):
        assert f'return "{state}";' in code


def test_app_runs_the_core_through_run_main():
    text = app_text()
    assert '#include "run_main.h"' in text
    assert re.search(r"llm_runner::RunMain\(\s*static_cast<int>\(args\.size\(\)\),\s*argv\.data\(\)\)", text)
    header = (NATIVE / "src" / "run_main.h").read_text()
    assert re.search(r"namespace llm_runner \{.*int RunMain\(int argc, char\*\* argv\);", header, re.S)
    # Off the main thread, at user-interactive QoS, and the app exits when the run is over.
    main = (IOS / "App" / "main.mm").read_text()
    for needle in ("pthread_create(", "pthread_set_qos_class_self_np(QOS_CLASS_USER_INTERACTIVE, 0)",
                   "runner_app::RunRequest()", "std::exit(0)", "didFinishLaunchingWithOptions",
                   "UIApplicationMain("):
        assert needle in main, needle


def test_info_plist_makes_documents_reachable_and_names_real_classes():
    info = plistlib.loads((IOS / "Info.plist").read_bytes())
    assert info["UIFileSharingEnabled"] is True and info["LSSupportsOpeningDocumentsInPlace"] is True
    # Xcode fills these from project.yml's settings, checked above against the contract.
    assert info["CFBundleIdentifier"] == "$(PRODUCT_BUNDLE_IDENTIFIER)"
    assert info["CFBundleExecutable"] == "$(EXECUTABLE_NAME)"
    assert info["CFBundlePackageType"] == "APPL" and info["LSRequiresIPhoneOS"] is True
    assert "arm64" in info["UIRequiredDeviceCapabilities"]
    scenes = info["UIApplicationSceneManifest"]["UISceneConfigurations"]["UIWindowSceneSessionRoleApplication"]
    delegate = scenes[0]["UISceneDelegateClassName"]
    assert f"@implementation {delegate}" in (IOS / "App" / "main.mm").read_text()


def test_export_options_and_entitlements_are_valid_plists():
    export = plistlib.loads((IOS / "ExportOptions.plist").read_bytes())
    assert export["method"] == "development" and export["signingStyle"] == "automatic"
    entitlements = plistlib.loads((IOS / "LiteRTBenchRunner.entitlements").read_bytes())
    assert entitlements == {"com.apple.developer.kernel.increased-memory-limit": True,
                            "com.apple.developer.kernel.extended-virtual-addressing": True}


def test_build_scripts_and_readme_agree_on_the_one_command_and_its_output():
    for name in ("build.sh", "build_tflite.sh"):
        assert os.access(IOS / name, os.X_OK), name
        subprocess.run(["bash", "-n", str(IOS / name)], check=True)
    text = (IOS / "build.sh").read_text()
    assert 'APP=LiteRTBenchRunner' in text and 'IPA="$BUILD/$APP.ipa"' in text and "BUILD=build" in text
    for step in ("./build_tflite.sh", "xcodegen generate --spec project.yml", "xcodebuild archive", "-exportArchive",
                 "-configuration Release", "-sdk iphoneos", "ExportOptions.plist", "-allowProvisioningUpdates"):
        assert step in text, step
    commands = [line.strip() for line in text.splitlines() if not line.lstrip().startswith(("#", "echo"))]
    steps = ("./build_tflite.sh", "xcodegen generate", "xcodebuild archive", "if xcodebuild -exportArchive")
    order = [next(i for i, line in enumerate(commands) if line.startswith(step)) for step in steps]
    assert order == sorted(order), order
    # The framework build_tflite.sh makes is the one project.yml links.
    tflite = (IOS / "build_tflite.sh").read_text()
    assert 'FRAMEWORK="$OUT_DIR/TensorFlowLiteC.framework"' in tflite and "OUT_DIR=build/tflite" in tflite
    linked = [d["framework"] for d in app_target()["dependencies"]]
    assert linked == ["build/tflite/TensorFlowLiteC.framework"]
    assert re.search(r"^LITERT_TAG=v\d+\.\d+\.\d+$", tflite, re.M)
    assert re.search(r"^LITERT_COMMIT=[0-9a-f]{40}\b", tflite, re.M)
    readme = (IOS / "README.md").read_text()
    for needle in ("DEVELOPMENT_TEAM=XXXXXXXXXX ./build.sh", "brew install xcodegen bazelisk",
                   "--runner-app device_runners/native/ios/build/LiteRTBenchRunner.ipa", "--bandwidth-probe-mb 0",
                   re.search(r"^LITERT_TAG=(\S+)", tflite, re.M).group(1)):
        assert needle in readme, needle


# The core's iOS configuration, built and run on Linux.
@pytest.fixture(scope="module")
def ios_config_runner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runner core (CMake's list, main.cc as its entry point) compiled as the iOS app compiles it, -Werror."""
    compiler = shutil.which("c++")
    assert compiler, "no C++ compiler (the host runner build needs one too)"
    lib = host_runtime_lib()
    binary = tmp_path_factory.mktemp("ios-config") / "llm_runner"
    cmd = [compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", *IOS_DEFINES,
           *[str(NATIVE / f) for f in cmake_core_files()], "-o", str(binary), f"-L{lib.parent}", "-llitert-lm",
           f"-Wl,-rpath,{lib.parent}", "-pthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return binary


def dynamic_symbols(path: Path, *flags: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *flags, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def build_tflite_symbols() -> set[str]:
    """build_tflite.sh's RUNNER_SYMBOLS: what it requires the TensorFlowLiteC framework to export."""
    text = (IOS / "build_tflite.sh").read_text()
    match = re.search(r"^RUNNER_SYMBOLS=\(\n(.*?)^\)", text, re.M | re.S)
    assert match, "build_tflite.sh has no RUNNER_SYMBOLS=( ... )"
    return set(match.group(1).split())


def test_ios_configuration_needs_only_the_tflite_c_api_that_the_framework_is_checked_for(ios_config_runner):
    """TensorFlowLiteC exports the TfLite* C functions and nothing of LiteRT: the iOS build must need no more, and
    build_tflite.sh must check the framework for exactly what it needs."""
    needed = {n for n in dynamic_symbols(ios_config_runner, "--undefined-only")
              if n.startswith(("TfLite", "LiteRt", "Lrt"))}
    assert needed <= dynamic_symbols(host_runtime_lib(), "--defined-only")
    assert needed and all(name.startswith("TfLite") for name in needed), sorted(needed)
    assert {"TfLiteXNNPackDelegateCreate", "TfLiteInterpreterCreate", "TfLiteSignatureRunnerInvoke"} <= needed
    assert build_tflite_symbols() == needed


def run(binary: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_ios_configuration_defaults_to_the_interpreter_and_no_probe(ios_config_runner):
    usage = run(ios_config_runner, "--help").stdout
    assert "(default: interpreter)" in usage and "(default 0; 0: no probe)" in usage


@pytest.mark.parametrize(("flags", "reason"), [
    (("--api", "compiled_model"), "--api compiled_model is not in this build"),
    (("--bandwidth-probe-mb", 16), "--bandwidth-probe-mb 16: the bandwidth probe runs in a forked child"),
], ids=["compiled-model", "bandwidth-probe"])
def test_ios_configuration_refuses_what_ios_cannot_do_as_a_usage_error(ios_config_runner, tmp_path, flags, reason):
    proc = run(ios_config_runner, "--model", tmp_path / "absent.tflite", *flags)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith(f"error: {reason}"), proc.stderr
    assert proc.stdout == ""


def test_ios_configuration_runs_the_benchmark_like_the_host_interpreter(ios_config_runner, tiny_artifact):
    model = tiny_artifact("none", prefill=PREFILL, decode=KV_LEN - PREFILL).path
    workload = ("--threads", 2, "--decode", 8, "--warmup", 0, "--reps", 2)
    proc = run(ios_config_runner, "--model", model, *workload)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["api"] == "interpreter" and out["xnnpack"] is True
    assert out["bandwidth"] is None and out["weight_bytes"] is None
    assert "note: weight_bytes is null" in proc.stderr
    assert len(out["samples"]) == 2 and out["peak_rss_kb"] > 0 and out["vmhwm_kb"] > 0
    host: RunnerBuild = build_runner("host")
    reference = run(host.binary, "--model", model, "--api", "interpreter", "--bandwidth-probe-mb", 0, *workload)
    assert reference.returncode == 0, reference.stderr
    assert out["tokens"] == json.loads(reference.stdout)["tokens"]
