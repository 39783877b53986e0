// Engine on LiteRT's CompiledModel C API (CPU accelerator, XNNPACK).
//
// The KV cache lives in host memory this engine owns: one LiteRtTensorBuffer
// per kv_cache_{k,v}_i wraps it and is bound as that signature's input AND
// output, for prefill and decode alike, so the model updates the cache in
// place and no step copies it.
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine.h"
#include "litert_c_api.h"
#include "owned.h"
#include "profiler.h"

namespace llm_runner {

#if LLM_RUNNER_HAS_COMPILED_MODEL

namespace {

using EnvironmentPtr = Owned<LiteRtEnvironment, LiteRtDestroyEnvironment>;
using ModelPtr = Owned<LiteRtModel, LiteRtDestroyModel>;
using OptionsPtr = Owned<LiteRtOptions, LiteRtDestroyOptions>;
using CpuOptionsPtr = Owned<LrtCpuOptions*, LrtDestroyCpuOptions>;
using RuntimeOptionsPtr = Owned<LrtRuntimeOptions*, LrtDestroyRuntimeOptions>;
using OpaqueOptionsPtr =
    Owned<LiteRtOpaqueOptions, LiteRtDestroyOpaqueOptions>;
using CompiledModelPtr =
    Owned<LiteRtCompiledModel, LiteRtDestroyCompiledModel>;
using TensorBufferPtr = Owned<LiteRtTensorBuffer, LiteRtDestroyTensorBuffer>;

void Check(LiteRtStatus status, const char* call) {
  if (status != kLiteRtStatusOk) {
    FailRuntime(std::string(call) + " failed: " +
                LiteRtGetStatusString(status));
  }
}

// Storage for a LiteRtRankedTensorType, which stays opaque in the header.
// In LiteRT 2.3 it is 72 bytes: int32 element_type at 0, then LiteRtLayout
// {uint32 rank:7, has_strides:1 at 4; int32 dimensions[8] at 8; uint32
// strides[8] at 40} (LiteRtGetRankedTensorType copies exactly 72 bytes).
// Only element type, rank and dimensions are read, and every buffer is
// cross-checked against the runtime's own size requirement, so a layout
// change fails loudly instead of misreading shapes.
class RankedType {
 public:
  LiteRtRankedTensorType* get() {
    return reinterpret_cast<LiteRtRankedTensorType*>(bytes_);
  }
  const LiteRtRankedTensorType* get() const {
    return reinterpret_cast<const LiteRtRankedTensorType*>(bytes_);
  }
  int32_t element_type() const { return Word(0); }
  int rank() const { return static_cast<int>(Word(4) & 0x7f); }
  int32_t dim(int i) const { return Word(8 + 4 * i); }
  size_t num_elements() const {
    size_t n = 1;
    for (int i = 0; i < rank(); ++i) n *= static_cast<size_t>(dim(i));
    return n;
  }

 private:
  int32_t Word(size_t offset) const {
    int32_t value;
    std::memcpy(&value, bytes_ + offset, sizeof(value));
    return value;
  }
  alignas(8) unsigned char bytes_[256] = {};
};

struct SignatureIo {
  LiteRtParamIndex index = 0;
  std::vector<std::string> inputs, outputs;
  std::vector<RankedType> input_types, output_types;

  const RankedType& InputType(const std::string& name) const {
    return input_types[Find(inputs, name)];
  }
  const RankedType& OutputType(const std::string& name) const {
    return output_types[Find(outputs, name)];
  }

 private:
  static size_t Find(const std::vector<std::string>& names,
                     const std::string& name) {
    size_t i = 0;
    while (names[i] != name) ++i;  // callers checked that `name` is present
    return i;
  }
};

SignatureIo ReadSignature(LiteRtModel model, LiteRtParamIndex index) {
  SignatureIo io;
  io.index = index;
  LiteRtSignature signature;
  Check(LiteRtGetModelSignature(model, index, &signature),
        "LiteRtGetModelSignature");
  // Inputs and outputs are read the same way, through their own C API calls.
  // `side` ("Input"/"Output") names the failing call in errors, as everywhere else.
  auto read_side = [signature](auto get_count, auto get_name, auto get_tensor, const std::string& side,
                               std::vector<std::string>& names, auto& types) {
    const std::string call = "LiteRtGetSignature" + side;
    LiteRtParamIndex n = 0;
    Check(get_count(signature, &n), ("LiteRtGetNumSignature" + side + "s").c_str());
    types.resize(n);
    for (LiteRtParamIndex i = 0; i < n; ++i) {
      const char* name;
      LiteRtTensor tensor;
      Check(get_name(signature, i, &name), (call + "Name").c_str());
      Check(get_tensor(signature, i, &tensor), (call + "TensorByIndex").c_str());
      Check(LiteRtGetRankedTensorType(tensor, types[i].get()),
            "LiteRtGetRankedTensorType");
      names.emplace_back(name);
    }
  };
  read_side(LiteRtGetNumSignatureInputs, LiteRtGetSignatureInputName,
            LiteRtGetSignatureInputTensorByIndex, "Input",
            io.inputs, io.input_types);
  read_side(LiteRtGetNumSignatureOutputs, LiteRtGetSignatureOutputName,
            LiteRtGetSignatureOutputTensorByIndex, "Output",
            io.outputs, io.output_types);
  return io;
}

// Host memory plus the tensor buffer that wraps it (memory outlives buffer).
struct HostTensor {
  AlignedBuffer memory;
  TensorBufferPtr buffer;
  int32_t* ints() const { return static_cast<int32_t*>(memory.data()); }
  const float* floats() const {
    return static_cast<const float*>(memory.data());
  }
};

class CompiledModelEngine : public Engine {
 public:
  CompiledModelEngine(const std::string& path, const EngineOptions& options);

  const ModelInfo& info() const override { return info_; }
  void ResetKvCache() override;
  void Prefill(const std::vector<int32_t>& tokens, int32_t start) override;
  const float* Decode(int32_t token, int32_t position) override;
  void StartProfile() override;
  std::vector<ProfileEvent> StopProfile() override;
  const char* profiler_name() const override { return "litert"; }

 private:
  void Compile(const EngineOptions& engine_options);
  // Adds `identifier`'s payload to the compilation options, which own it.
  void AddOpaque(const char* identifier, void* payload,
                 void (*payload_deleter)(void*));
  // Allocates a tensor of `type` sized by the runtime's requirement `bytes`;
  // `what` names it in errors.
  HostTensor MakeHostTensor(const RankedType& type, size_t bytes,
                            int32_t element_type, const std::string& what);
  size_t InputBytes(const SignatureIo& io, size_t i);
  size_t OutputBytes(const SignatureIo& io, size_t i);
  // Lists `io`'s buffers in signature order: the shared KV buffers plus new
  // tokens/positions tensors, and `logits` if non-null and an output.
  void BindSignature(const SignatureIo& io, HostTensor& tokens,
                     HostTensor& positions, HostTensor* logits,
                     std::vector<LiteRtTensorBuffer>& inputs,
                     std::vector<LiteRtTensorBuffer>& outputs);
  void Run(const SignatureIo& io, std::vector<LiteRtTensorBuffer>& inputs,
           std::vector<LiteRtTensorBuffer>& outputs);

  // Declaration order is destruction order reversed: buffers go first, the
  // environment last.
  EnvironmentPtr env_;
  ModelPtr model_;
  OptionsPtr options_;
  CompiledModelPtr compiled_;
  LiteRtProfiler profiler_ = nullptr;  // owned by compiled_; with options.profile
  std::vector<double> runs_us_;  // with profiler_: each run since StartProfile
  SignatureIo prefill_, decode_;
  ModelInfo info_;
  std::map<std::string, HostTensor> kv_;
  HostTensor prefill_tokens_, prefill_positions_;
  HostTensor decode_tokens_, decode_positions_, logits_;
  std::vector<HostTensor> unused_outputs_;  // e.g. logits of a prefill
  std::vector<LiteRtTensorBuffer> prefill_in_, prefill_out_;
  std::vector<LiteRtTensorBuffer> decode_in_, decode_out_;
};

CompiledModelEngine::CompiledModelEngine(const std::string& path,
                                         const EngineOptions& options) {
  LiteRtEnvironment env = nullptr;
  Check(LiteRtCreateEnvironment(0, nullptr, &env), "LiteRtCreateEnvironment");
  env_.reset(env);

  LiteRtModel model = nullptr;
  const LiteRtStatus status =
      LiteRtCreateModelFromFile(env, path.c_str(), &model);
  if (status != kLiteRtStatusOk) {
    FailModel(path, std::string("LiteRtCreateModelFromFile failed: ") +
                        LiteRtGetStatusString(status));
  }
  model_.reset(model);

  LiteRtParamIndex num_signatures = 0;
  Check(LiteRtGetNumModelSignatures(model, &num_signatures),
        "LiteRtGetNumModelSignatures");
  std::vector<std::string> keys;
  for (LiteRtParamIndex i = 0; i < num_signatures; ++i) {
    LiteRtSignature signature;
    const char* key;
    Check(LiteRtGetModelSignature(model, i, &signature),
          "LiteRtGetModelSignature");
    Check(LiteRtGetSignatureKey(signature, &key), "LiteRtGetSignatureKey");
    keys.emplace_back(key);
  }
  const SignaturePair pair = FindSignatures(path, keys);
  prefill_ = ReadSignature(model, pair.prefill);
  decode_ = ReadSignature(model, pair.decode);
  info_ = CheckSignatureNames(path, prefill_.inputs, prefill_.outputs,
                              decode_.inputs, decode_.outputs);

  Compile(options);

  // One buffer per KV tensor, shaped and sized from the prefill input; the
  // decode input of the same name must need the same bytes.
  for (size_t i = 0; i < prefill_.inputs.size(); ++i) {
    const std::string& name = prefill_.inputs[i];
    if (!IsKvCacheName(name)) continue;
    kv_[name] = MakeHostTensor(prefill_.input_types[i], InputBytes(prefill_, i),
                               kLiteRtElementTypeFloat32, name);
  }
  for (size_t i = 0; i < decode_.inputs.size(); ++i) {
    const std::string& name = decode_.inputs[i];
    if (IsKvCacheName(name) && InputBytes(decode_, i) != kv_[name].memory.size()) {
      FailModel(path, "prefill and decode disagree on the size of " + name);
    }
  }
  BindSignature(prefill_, prefill_tokens_, prefill_positions_, nullptr,
                prefill_in_, prefill_out_);
  BindSignature(decode_, decode_tokens_, decode_positions_, &logits_,
                decode_in_, decode_out_);

  const auto dims = [](const RankedType& type) {
    std::vector<int> out;
    for (int i = 0; i < type.rank(); ++i) out.push_back(type.dim(i));
    return out;
  };
  if (decode_.InputType(kTokensName).num_elements() != 1) {
    FailModel(path, "signature 'decode' takes more than one token");
  }
  // kv_ is sorted by name: its first entry is a K tensor (kv_cache_k_...).
  const std::string k_name = kv_.begin()->first;
  const std::string v_name = "kv_cache_v_" + k_name.substr(11);
  if (kv_.count(v_name) == 0) FailModel(path, k_name + " has no " + v_name);
  info_.kv_len = KvCacheLength(path, dims(prefill_.InputType(k_name)),
                               dims(prefill_.InputType(v_name)));
  info_.prefill_len =
      static_cast<int>(prefill_.InputType(kTokensName).num_elements());
  info_.vocab = static_cast<int>(decode_.OutputType(kLogitsName).num_elements());
  // The tensors' own bytes (MakeHostTensor checked they are float32), not
  // the possibly padded buffer sizes the runtime asked for.
  for (const auto& entry : kv_) {
    info_.kv_cache_bytes +=
        prefill_.InputType(entry.first).num_elements() * sizeof(float);
  }
}

void CompiledModelEngine::Compile(const EngineOptions& engine_options) {
  LiteRtOptions options = nullptr;
  Check(LiteRtCreateOptions(&options), "LiteRtCreateOptions");
  options_.reset(options);
  Check(LiteRtSetOptionsHardwareAccelerators(options, kLiteRtHwAcceleratorCpu),
        "LiteRtSetOptionsHardwareAccelerators");

  LrtCpuOptions* cpu = nullptr;
  Check(LrtCreateCpuOptions(&cpu), "LrtCreateCpuOptions");
  const CpuOptionsPtr cpu_owner(cpu);
  Check(LrtSetCpuOptionsNumThread(cpu, engine_options.threads),
        "LrtSetCpuOptionsNumThread");
  if (!engine_options.weight_cache.empty()) {
    Check(LrtSetCpuOptionsXnnPackWeightCachePath(
              cpu, engine_options.weight_cache.c_str()),
          "LrtSetCpuOptionsXnnPackWeightCachePath");
  }
  if (engine_options.fp16_arithmetic) {
    // The setter replaces the accelerator's flags, which start as the
    // delegate's defaults: keep those and add FP16.
    Check(LrtSetCpuOptionsXNNPackFlags(
              cpu, CheckedXnnpackDefaults().flags |
                       TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16),
          "LrtSetCpuOptionsXNNPackFlags");
  }
  const char* identifier = nullptr;
  void* payload = nullptr;
  void (*payload_deleter)(void*) = nullptr;
  Check(LrtGetOpaqueCpuOptionsData(cpu, &identifier, &payload,
                                   &payload_deleter),
        "LrtGetOpaqueCpuOptionsData");
  AddOpaque(identifier, payload, payload_deleter);
  if (engine_options.profile) {
    // The compiled model then creates a profiler and attaches it to its
    // interpreter before the CPU accelerator applies XNNPACK.
    LrtRuntimeOptions* runtime = nullptr;
    Check(LrtCreateRuntimeOptions(&runtime), "LrtCreateRuntimeOptions");
    const RuntimeOptionsPtr runtime_owner(runtime);
    Check(LrtSetRuntimeOptionsEnableProfiling(runtime, true),
          "LrtSetRuntimeOptionsEnableProfiling");
    Check(LrtGetOpaqueRuntimeOptionsData(runtime, &identifier, &payload,
                                         &payload_deleter),
          "LrtGetOpaqueRuntimeOptionsData");
    AddOpaque(identifier, payload, payload_deleter);
  }

  LiteRtCompiledModel compiled = nullptr;
  Check(LiteRtCreateCompiledModel(env_.get(), model_.get(), options, &compiled),
        "LiteRtCreateCompiledModel");
  compiled_.reset(compiled);
  if (engine_options.profile) {
    Check(LiteRtCompiledModelGetProfiler(compiled, &profiler_),
          "LiteRtCompiledModelGetProfiler");
    if (profiler_ == nullptr) {
      FailRuntime("the compiled model has no profiler although its options "
                  "enable profiling");
    }
  }
}

void CompiledModelEngine::AddOpaque(const char* identifier, void* payload,
                                    void (*payload_deleter)(void*)) {
  LiteRtOpaqueOptions opaque = nullptr;
  Check(LiteRtCreateOpaqueOptions(identifier, payload, payload_deleter,
                                  &opaque),
        "LiteRtCreateOpaqueOptions");
  OpaqueOptionsPtr opaque_owner(opaque);
  Check(LiteRtAddOpaqueOptions(options_.get(), opaque),
        "LiteRtAddOpaqueOptions");
  opaque_owner.release();  // now owned by options_
}

HostTensor CompiledModelEngine::MakeHostTensor(const RankedType& type,
                                               size_t bytes,
                                               int32_t element_type,
                                               const std::string& what) {
  // element_type is 4 bytes wide for both kinds used here.
  if (type.element_type() != element_type || type.rank() < 1 ||
      type.rank() > 8 || type.num_elements() * 4 > bytes) {
    FailRuntime("unexpected tensor type or LiteRtRankedTensorType layout for '" +
                what + "' (element type " +
                std::to_string(type.element_type()) + ", rank " +
                std::to_string(type.rank()) + ", " + std::to_string(bytes) +
                " bytes required)");
  }
  HostTensor tensor;
  tensor.memory = AlignedBuffer(bytes);
  LiteRtTensorBuffer buffer = nullptr;
  Check(LiteRtCreateTensorBufferFromHostMemory(
            type.get(), tensor.memory.data(), bytes, nullptr, &buffer),
        "LiteRtCreateTensorBufferFromHostMemory");
  tensor.buffer.reset(buffer);
  return tensor;
}

size_t CompiledModelEngine::InputBytes(const SignatureIo& io, size_t i) {
  LiteRtTensorBufferRequirements requirements = nullptr;
  size_t bytes = 0;
  Check(LiteRtGetCompiledModelInputBufferRequirements(compiled_.get(), io.index,
                                                      i, &requirements),
        "LiteRtGetCompiledModelInputBufferRequirements");
  Check(LiteRtGetTensorBufferRequirementsBufferSize(requirements, &bytes),
        "LiteRtGetTensorBufferRequirementsBufferSize");
  return bytes;
}

size_t CompiledModelEngine::OutputBytes(const SignatureIo& io, size_t i) {
  LiteRtTensorBufferRequirements requirements = nullptr;
  size_t bytes = 0;
  Check(LiteRtGetCompiledModelOutputBufferRequirements(
            compiled_.get(), io.index, i, &requirements),
        "LiteRtGetCompiledModelOutputBufferRequirements");
  Check(LiteRtGetTensorBufferRequirementsBufferSize(requirements, &bytes),
        "LiteRtGetTensorBufferRequirementsBufferSize");
  return bytes;
}

void CompiledModelEngine::BindSignature(
    const SignatureIo& io, HostTensor& tokens, HostTensor& positions,
    HostTensor* logits, std::vector<LiteRtTensorBuffer>& inputs,
    std::vector<LiteRtTensorBuffer>& outputs) {
  for (size_t i = 0; i < io.inputs.size(); ++i) {
    const std::string& name = io.inputs[i];
    if (name == kTokensName || name == kInputPosName) {
      HostTensor& tensor = name == kTokensName ? tokens : positions;
      tensor = MakeHostTensor(io.input_types[i], InputBytes(io, i),
                              kLiteRtElementTypeInt32, name);
      inputs.push_back(tensor.buffer.get());
    } else {
      inputs.push_back(kv_.at(name).buffer.get());
    }
  }
  for (size_t i = 0; i < io.outputs.size(); ++i) {
    const std::string& name = io.outputs[i];
    if (IsKvCacheName(name)) {
      outputs.push_back(kv_.at(name).buffer.get());  // same buffer: in place
      continue;
    }
    HostTensor tensor = MakeHostTensor(io.output_types[i], OutputBytes(io, i),
                                       kLiteRtElementTypeFloat32, name);
    outputs.push_back(tensor.buffer.get());
    if (logits != nullptr && name == kLogitsName) {
      *logits = std::move(tensor);
    } else {
      unused_outputs_.push_back(std::move(tensor));
    }
  }
}

void CompiledModelEngine::Run(const SignatureIo& io,
                              std::vector<LiteRtTensorBuffer>& inputs,
                              std::vector<LiteRtTensorBuffer>& outputs) {
  // Profiling, the call is timed too: LiteRT's profiler leaves part of it
  // out (ReadLiteRtEvents). Not otherwise: no clock in a measured run.
  using Clock = std::chrono::steady_clock;
  const Clock::time_point begin = profiler_ != nullptr ? Clock::now() : Clock::time_point();
  Check(LiteRtRunCompiledModel(compiled_.get(), io.index, inputs.size(),
                               inputs.data(), outputs.size(), outputs.data()),
        "LiteRtRunCompiledModel");
  if (profiler_ != nullptr) {
    runs_us_.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
  }
}

void CompiledModelEngine::ResetKvCache() {
  for (auto& entry : kv_) entry.second.memory.Zero();
}

void CompiledModelEngine::Prefill(const std::vector<int32_t>& tokens,
                                  int32_t start) {
  std::memcpy(prefill_tokens_.ints(), tokens.data(),
              tokens.size() * sizeof(int32_t));
  for (int i = 0; i < info_.prefill_len; ++i) {
    prefill_positions_.ints()[i] = start + i;
  }
  Run(prefill_, prefill_in_, prefill_out_);
}

// The buffers wrap our own memory and the run is synchronous, so inputs are
// written and logits read through plain pointers, without lock/unlock calls.
const float* CompiledModelEngine::Decode(int32_t token, int32_t position) {
  decode_tokens_.ints()[0] = token;
  decode_positions_.ints()[0] = position;
  Run(decode_, decode_in_, decode_out_);
  return logits_.floats();
}

void CompiledModelEngine::StartProfile() {
  if (profiler_ == nullptr) FailRuntime("this engine was created without a profiler");
  Check(LiteRtResetProfiler(profiler_), "LiteRtResetProfiler");
  runs_us_.clear();
  Check(LiteRtStartProfiler(profiler_), "LiteRtStartProfiler");
}

std::vector<ProfileEvent> CompiledModelEngine::StopProfile() {
  if (profiler_ == nullptr) FailRuntime("this engine was created without a profiler");
  Check(LiteRtStopProfiler(profiler_), "LiteRtStopProfiler");
  return ReadLiteRtEvents(profiler_, runs_us_);
}

}  // namespace

std::unique_ptr<Engine> CreateCompiledModelEngine(const std::string& path,
                                                  const EngineOptions& options) {
  return std::make_unique<CompiledModelEngine>(path, options);
}

#else  // !LLM_RUNNER_HAS_COMPILED_MODEL: the iOS app (see engine.h)

std::unique_ptr<Engine> CreateCompiledModelEngine(const std::string&,
                                                  const EngineOptions&) {
  throw RunnerError(kExitUsage,
                    "--api compiled_model is not in this build: it links the "
                    "TFLite C API (TensorFlowLiteC), which has no CompiledModel; "
                    "use --api interpreter");
}

#endif  // LLM_RUNNER_HAS_COMPILED_MODEL

}  // namespace llm_runner
