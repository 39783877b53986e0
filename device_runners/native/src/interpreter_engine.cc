// Engine on the classic TFLite C API: one signature runner per signature and
// an explicitly created XNNPACK delegate (the C API does not apply one by
// default). Each runner owns its own KV tensors, so after every step the KV
// outputs are copied into the decode runner's KV inputs: the per-step copy
// that the CompiledModel engine avoids.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "litert_c_api.h"
#include "owned.h"
#include "profiler.h"

namespace llm_runner {
namespace {

std::vector<std::string> InputNames(const TfLiteSignatureRunner* runner) {
  std::vector<std::string> names;
  const auto n = static_cast<int32_t>(TfLiteSignatureRunnerGetInputCount(runner));
  for (int32_t i = 0; i < n; ++i) {
    names.emplace_back(TfLiteSignatureRunnerGetInputName(runner, i));
  }
  return names;
}

std::vector<std::string> OutputNames(const TfLiteSignatureRunner* runner) {
  std::vector<std::string> names;
  const auto n =
      static_cast<int32_t>(TfLiteSignatureRunnerGetOutputCount(runner));
  for (int32_t i = 0; i < n; ++i) {
    names.emplace_back(TfLiteSignatureRunnerGetOutputName(runner, i));
  }
  return names;
}

size_t NumElements(const TfLiteTensor* tensor) {
  size_t n = 1;
  for (int32_t i = 0; i < TfLiteTensorNumDims(tensor); ++i) {
    n *= static_cast<size_t>(TfLiteTensorDim(tensor, i));
  }
  return n;
}

// With --profile, the copy of every KV output into the decode runner's
// inputs after a step: the engine's own work, which CompiledModel avoids.
constexpr char kKvCopySpan[] = "KV copy";

// The tensors of one KV cache entry in both runners.
struct KvTensors {
  TfLiteTensor* prefill_in;
  const TfLiteTensor* prefill_out;
  TfLiteTensor* decode_in;
  const TfLiteTensor* decode_out;
  size_t bytes;
};

class InterpreterEngine : public Engine {
 public:
  InterpreterEngine(const std::string& path, const EngineOptions& options);

  const ModelInfo& info() const override { return info_; }
  void ResetKvCache() override;
  void Prefill(const std::vector<int32_t>& tokens, int32_t start) override;
  const float* Decode(int32_t token, int32_t position) override;
  void StartProfile() override;
  std::vector<ProfileEvent> StopProfile() override;
  const char* profiler_name() const override { return "telemetry"; }

 private:
  TfLiteTensor* Input(TfLiteSignatureRunner* runner, const char* name,
                      TfLiteType type);
  const TfLiteTensor* Output(TfLiteSignatureRunner* runner, const char* name,
                             TfLiteType type);

  // Destroyed in reverse: runners, interpreter, options, then the delegate,
  // which must outlive the interpreter, the model, and the cache path the
  // delegate's options point at; the telemetry profiler outlives the
  // interpreter too.
  std::string weight_cache_;
  std::unique_ptr<TelemetryRecorder> telemetry_;  // with options.profile
  Owned<TfLiteModel*, TfLiteModelDelete> model_;
  Owned<TfLiteOpaqueDelegate*, TfLiteXNNPackDelegateDelete> delegate_;
  Owned<TfLiteInterpreterOptions*, TfLiteInterpreterOptionsDelete> options_;
  Owned<TfLiteInterpreter*, TfLiteInterpreterDelete> interpreter_;
  Owned<TfLiteSignatureRunner*, TfLiteSignatureRunnerDelete> prefill_;
  Owned<TfLiteSignatureRunner*, TfLiteSignatureRunnerDelete> decode_;
  ModelInfo info_;
  std::vector<KvTensors> kv_;
  TfLiteTensor* prefill_tokens_ = nullptr;
  TfLiteTensor* prefill_positions_ = nullptr;
  TfLiteTensor* decode_tokens_ = nullptr;
  TfLiteTensor* decode_positions_ = nullptr;
  const TfLiteTensor* logits_ = nullptr;
  // The cache lives in the decode runner's KV inputs after every step; the
  // prefill runner's KV inputs hold it only right after a reset.
  bool prefill_kv_current_ = false;
};

InterpreterEngine::InterpreterEngine(const std::string& path,
                                     const EngineOptions& options)
    : weight_cache_(options.weight_cache) {
  const int threads = options.threads;
  model_.reset(TfLiteModelCreateFromFile(path.c_str()));
  if (!model_) {
    FailModel(path, "TfLiteModelCreateFromFile failed (not a valid model)");
  }
  // A plain run touches num_threads alone, the one field every release has
  // at offset 0; the other fields need the checked layout.
  const bool more = !weight_cache_.empty() || options.fp16_arithmetic;
  TfLiteXNNPackDelegateOptions xnnpack =
      more ? CheckedXnnpackDefaults() : TfLiteXNNPackDelegateOptionsDefault();
  xnnpack.num_threads = threads;
  if (!weight_cache_.empty()) {
    xnnpack.weight_cache_file_path = weight_cache_.c_str();
  }
  if (options.fp16_arithmetic) {
    xnnpack.flags |= TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16;
  }
  delegate_.reset(TfLiteXNNPackDelegateCreate(&xnnpack));
  if (!delegate_) FailRuntime("TfLiteXNNPackDelegateCreate failed");
  options_.reset(TfLiteInterpreterOptionsCreate());
  TfLiteInterpreterOptionsSetNumThreads(options_.get(), threads);
  TfLiteInterpreterOptionsAddDelegate(options_.get(), delegate_.get());
  if (options.profile) {
    telemetry_ = std::make_unique<TelemetryRecorder>();
    TfLiteInterpreterOptionsSetTelemetryProfiler(options_.get(), telemetry_->get());
  }
  interpreter_.reset(TfLiteInterpreterCreate(model_.get(), options_.get()));
  if (!interpreter_) {
    // With a verified flatbuffer this means buffers outside the file or
    // unsupported ops: the model, not the machine (TFLite logged the cause).
    FailModel(path, "TfLiteInterpreterCreate failed (corrupt or unsupported model)");
  }

  const TfLiteInterpreter* interpreter = interpreter_.get();
  std::vector<std::string> keys;
  for (int32_t i = 0; i < TfLiteInterpreterGetSignatureCount(interpreter);
       ++i) {
    keys.emplace_back(TfLiteInterpreterGetSignatureKey(interpreter, i));
  }
  const SignaturePair pair = FindSignatures(path, keys);
  prefill_.reset(TfLiteInterpreterGetSignatureRunner(
      interpreter, keys[pair.prefill].c_str()));
  decode_.reset(TfLiteInterpreterGetSignatureRunner(
      interpreter, keys[pair.decode].c_str()));
  if (!prefill_ || !decode_) {
    FailRuntime("TfLiteInterpreterGetSignatureRunner failed");
  }
  TfLiteSignatureRunner* prefill = prefill_.get();
  TfLiteSignatureRunner* decode = decode_.get();
  const std::vector<std::string> prefill_inputs = InputNames(prefill);
  info_ = CheckSignatureNames(path, prefill_inputs, OutputNames(prefill),
                              InputNames(decode), OutputNames(decode));
  if (TfLiteSignatureRunnerAllocateTensors(prefill) != kTfLiteOk ||
      TfLiteSignatureRunnerAllocateTensors(decode) != kTfLiteOk) {
    FailRuntime("TfLiteSignatureRunnerAllocateTensors failed");
  }

  constexpr TfLiteType kFloat32 = kLiteRtElementTypeFloat32;
  constexpr TfLiteType kInt32 = kLiteRtElementTypeInt32;
  for (const std::string& name : prefill_inputs) {
    if (!IsKvCacheName(name)) continue;
    const char* n = name.c_str();
    KvTensors kv{Input(prefill, n, kFloat32), Output(prefill, n, kFloat32),
                 Input(decode, n, kFloat32), Output(decode, n, kFloat32), 0};
    kv.bytes = TfLiteTensorByteSize(kv.prefill_in);
    if (TfLiteTensorByteSize(kv.prefill_out) != kv.bytes ||
        TfLiteTensorByteSize(kv.decode_in) != kv.bytes ||
        TfLiteTensorByteSize(kv.decode_out) != kv.bytes) {
      FailModel(path, "KV tensors of different sizes for " + name);
    }
    kv_.push_back(kv);
    info_.kv_cache_bytes += kv.bytes;
  }
  const auto dims = [&](const std::string& name) {
    const TfLiteTensor* tensor = Input(prefill, name.c_str(), kFloat32);
    std::vector<int> out;
    for (int i = 0; i < TfLiteTensorNumDims(tensor); ++i) {
      out.push_back(TfLiteTensorDim(tensor, i));
    }
    return out;
  };
  // CheckSignatureNames found kv_cache_k_i/kv_cache_v_i pairs: take layer
  // 0's, or the first K name and its V counterpart.
  std::string k_name;
  for (const std::string& name : prefill_inputs) {
    if (IsKvKeyName(name) && (k_name.empty() || name < k_name)) k_name = name;
  }
  info_.kv_len = KvCacheLength(path, dims(k_name),
                               dims("kv_cache_v_" + k_name.substr(11)));
  prefill_tokens_ = Input(prefill, kTokensName, kInt32);
  prefill_positions_ = Input(prefill, kInputPosName, kInt32);
  decode_tokens_ = Input(decode, kTokensName, kInt32);
  decode_positions_ = Input(decode, kInputPosName, kInt32);
  logits_ = Output(decode, kLogitsName, kFloat32);
  info_.prefill_len = static_cast<int>(NumElements(prefill_tokens_));
  info_.vocab = static_cast<int>(NumElements(logits_));
  if (NumElements(decode_tokens_) != 1) {
    FailModel(path, "signature 'decode' takes more than one token");
  }
}

TfLiteTensor* InterpreterEngine::Input(TfLiteSignatureRunner* runner,
                                       const char* name, TfLiteType type) {
  TfLiteTensor* tensor = TfLiteSignatureRunnerGetInputTensor(runner, name);
  if (tensor == nullptr || TfLiteTensorType(tensor) != type ||
      TfLiteTensorData(tensor) == nullptr) {
    FailRuntime(std::string("unusable input tensor '") + name + "'");
  }
  return tensor;
}

const TfLiteTensor* InterpreterEngine::Output(TfLiteSignatureRunner* runner,
                                              const char* name,
                                              TfLiteType type) {
  const TfLiteTensor* tensor =
      TfLiteSignatureRunnerGetOutputTensor(runner, name);
  if (tensor == nullptr || TfLiteTensorType(tensor) != type) {
    FailRuntime(std::string("unusable output tensor '") + name + "'");
  }
  return tensor;
}

void InterpreterEngine::ResetKvCache() {
  for (const KvTensors& kv : kv_) {
    std::memset(TfLiteTensorData(kv.prefill_in), 0, kv.bytes);
    std::memset(TfLiteTensorData(kv.decode_in), 0, kv.bytes);
  }
  prefill_kv_current_ = true;
}

void InterpreterEngine::Prefill(const std::vector<int32_t>& tokens,
                                int32_t start) {
  // A prefill after other steps (the --depth fill) continues from the cache
  // those steps left in the decode runner. Right after a reset there is
  // nothing to copy, so the timed prefill costs what it always did.
  if (!prefill_kv_current_) {
    for (const KvTensors& kv : kv_) {
      std::memcpy(TfLiteTensorData(kv.prefill_in),
                  TfLiteTensorData(kv.decode_in), kv.bytes);
    }
  }
  prefill_kv_current_ = false;
  std::memcpy(TfLiteTensorData(prefill_tokens_), tokens.data(),
              tokens.size() * sizeof(int32_t));
  auto* positions = static_cast<int32_t*>(TfLiteTensorData(prefill_positions_));
  for (int i = 0; i < info_.prefill_len; ++i) positions[i] = start + i;
  {
    const ScopedSpan span(telemetry_.get(), "Invoke");
    if (TfLiteSignatureRunnerInvoke(prefill_.get()) != kTfLiteOk) {
      FailRuntime("TfLiteSignatureRunnerInvoke(prefill) failed");
    }
  }
  const ScopedSpan span(telemetry_.get(), kKvCopySpan);
  for (const KvTensors& kv : kv_) {
    std::memcpy(TfLiteTensorData(kv.decode_in), TfLiteTensorData(kv.prefill_out),
                kv.bytes);
  }
}

const float* InterpreterEngine::Decode(int32_t token, int32_t position) {
  prefill_kv_current_ = false;
  static_cast<int32_t*>(TfLiteTensorData(decode_tokens_))[0] = token;
  static_cast<int32_t*>(TfLiteTensorData(decode_positions_))[0] = position;
  {
    const ScopedSpan span(telemetry_.get(), "Invoke");
    if (TfLiteSignatureRunnerInvoke(decode_.get()) != kTfLiteOk) {
      FailRuntime("TfLiteSignatureRunnerInvoke(decode) failed");
    }
  }
  {
    const ScopedSpan span(telemetry_.get(), kKvCopySpan);
    for (const KvTensors& kv : kv_) {
      std::memcpy(TfLiteTensorData(kv.decode_in), TfLiteTensorData(kv.decode_out),
                  kv.bytes);
    }
  }
  return static_cast<const float*>(TfLiteTensorData(logits_));
}

void InterpreterEngine::StartProfile() {
  if (!telemetry_) FailRuntime("this engine was created without a profiler");
  telemetry_->Start();
}

std::vector<ProfileEvent> InterpreterEngine::StopProfile() {
  if (!telemetry_) FailRuntime("this engine was created without a profiler");
  return telemetry_->Stop();
}

}  // namespace

std::unique_ptr<Engine> CreateInterpreterEngine(const std::string& path,
                                                const EngineOptions& options) {
  return std::make_unique<InterpreterEngine>(path, options);
}

}  // namespace llm_runner
