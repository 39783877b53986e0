#!/usr/bin/env bash
# Builds build/tflite/TensorFlowLiteC.framework: the TFLite C API with XNNPACK for arm64 iOS devices, a static
# framework that exports only TfLite* symbols, from google-ai-edge/LiteRT's source at a pinned release (README.md
# says why from source: no published iOS binary runs the harness's models correctly). build.sh runs it; it does
# nothing when the framework of this commit is already there. Takes a while the first time (Bazel builds TFLite
# and its dependencies; the Bazel cache makes later builds quick).
#
# Needs Xcode, git, bazelisk (brew install bazelisk) and python3 >= 3.10 (brew install python@3.11), as LiteRT's
# own iOS CI (.github/workflows/ios-arm64.yml) has. TFLITE_FRAMEWORK=/path/to/TensorFlowLiteC.framework uses one
# built elsewhere instead.
set -euo pipefail

cd "$(dirname "$0")"

LITERT_REPO=https://github.com/google-ai-edge/LiteRT.git
LITERT_TAG=v2.2.0
LITERT_COMMIT=145c7523ff08d5e57ab5c582141775eea47da9c7  # the tag's commit: a moved tag fails the build
SRC=build/LiteRT
OUT_DIR=build/tflite
FRAMEWORK="$OUT_DIR/TensorFlowLiteC.framework"
STAMP="$OUT_DIR/SOURCE"

die() {
  echo "build_tflite.sh: $*" >&2
  exit 1
}

# Every C function the runner core calls in its iOS configuration (litert_c_api.h's TFLite half; the compiled_model
# engine and the weight count are compiled out there): a framework without one of them cannot link the app.
# tests/test_ios_app.py checks this list against what a Linux build of that configuration needs.
RUNNER_SYMBOLS=(
  TfLiteInterpreterCreate
  TfLiteInterpreterDelete
  TfLiteInterpreterGetSignatureCount
  TfLiteInterpreterGetSignatureKey
  TfLiteInterpreterGetSignatureRunner
  TfLiteInterpreterOptionsAddDelegate
  TfLiteInterpreterOptionsCreate
  TfLiteInterpreterOptionsDelete
  TfLiteInterpreterOptionsSetNumThreads
  TfLiteInterpreterOptionsSetTelemetryProfiler
  TfLiteModelCreateFromFile
  TfLiteModelCreateFromFileWithErrorReporter
  TfLiteModelDelete
  TfLiteSignatureRunnerAllocateTensors
  TfLiteSignatureRunnerDelete
  TfLiteSignatureRunnerGetInputCount
  TfLiteSignatureRunnerGetInputName
  TfLiteSignatureRunnerGetInputTensor
  TfLiteSignatureRunnerGetOutputCount
  TfLiteSignatureRunnerGetOutputName
  TfLiteSignatureRunnerGetOutputTensor
  TfLiteSignatureRunnerInvoke
  TfLiteTensorByteSize
  TfLiteTensorData
  TfLiteTensorDim
  TfLiteTensorNumDims
  TfLiteTensorType
  TfLiteVersion
  TfLiteXNNPackDelegateCreate
  TfLiteXNNPackDelegateDelete
  TfLiteXNNPackDelegateOptionsDefault
)

check_framework() {
  local binary="$1/TensorFlowLiteC" symbols symbol
  [[ -f "$binary" ]] || die "$1 has no TensorFlowLiteC binary"
  symbols="$(nm -gU "$binary" 2>/dev/null || true)"
  for symbol in "${RUNNER_SYMBOLS[@]}"; do
    grep -q " _${symbol}\$" <<<"$symbols" || die "$binary does not export $symbol"
  done
  [[ "$(lipo -archs "$binary")" == *arm64* ]] || die "$binary has no arm64 slice"
}

if [[ -n "${TFLITE_FRAMEWORK:-}" ]]; then
  [[ -d "$TFLITE_FRAMEWORK" ]] || die "TFLITE_FRAMEWORK=$TFLITE_FRAMEWORK is not a directory"
  check_framework "$TFLITE_FRAMEWORK"
  rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"
  cp -R "$TFLITE_FRAMEWORK" "$FRAMEWORK"
  echo "given: $TFLITE_FRAMEWORK" >"$STAMP"
  echo "==> $FRAMEWORK (copied from $TFLITE_FRAMEWORK)"
  exit 0
fi

if [[ -f "$FRAMEWORK/TensorFlowLiteC" && "$(cat "$STAMP" 2>/dev/null)" == "$LITERT_COMMIT" ]]; then
  echo "==> $FRAMEWORK (LiteRT $LITERT_TAG, built before)"
  exit 0
fi

command -v git >/dev/null 2>&1 || die "git not found: xcode-select --install"
command -v bazelisk >/dev/null 2>&1 || die "bazelisk not found: brew install bazelisk"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
  die "LiteRT's build needs python3 >= 3.10 first on PATH (brew install python@3.11)"

if [[ ! -d "$SRC/.git" ]]; then
  echo "==> git clone LiteRT $LITERT_TAG"
  git clone --depth 1 --branch "$LITERT_TAG" "$LITERT_REPO" "$SRC"
fi
[[ "$(git -C "$SRC" rev-parse HEAD)" == "$LITERT_COMMIT" ]] ||
  die "$SRC is not at $LITERT_COMMIT (LiteRT $LITERT_TAG): remove it and run again"

echo "==> LiteRT configure.py (iOS)"
(
  cd "$SRC"
  PYTHON_BIN_PATH="$(command -v python3)" \
    PYTHON_LIB_PATH="$(python3 -c 'import site; print(site.getsitepackages()[0])')" \
    TF_NEED_ROCM=0 TF_NEED_CUDA=0 TF_SET_ANDROID_WORKSPACE=0 TF_CONFIGURE_IOS=1 CC_OPT_FLAGS=-Wno-sign-compare \
    python3 configure.py </dev/null
)

# LiteRT's iOS CI flags, except bitcode: .bazelrc's ios config embeds it, and for bitcode objects the framework's
# symbol-hiding step (tflite/ios/hide_symbols_with_allowlist.sh) links with `ld -r -bitcode_bundle`, a flag from
# before Xcode 14 dropped bitcode that newer linkers ignore or refuse. -fembed-bitcode=off, after the config on the
# command line, wins, and the step takes its plain `ld -r` path.
echo "==> bazelisk build //tflite/ios:TensorFlowLiteC_framework (ios_arm64)"
(
  cd "$SRC"
  bazelisk build --config=ios_arm64 --compilation_mode=opt --copt=-fembed-bitcode=off \
    --repo_env=USE_PYWRAP_RULES=True //tflite/ios:TensorFlowLiteC_framework
)

rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"
unzip -q "$SRC/bazel-bin/tflite/ios/TensorFlowLiteC_framework.zip" -d "$OUT_DIR"
check_framework "$FRAMEWORK"
echo "$LITERT_COMMIT" >"$STAMP"
echo "==> $FRAMEWORK (LiteRT $LITERT_TAG)"
