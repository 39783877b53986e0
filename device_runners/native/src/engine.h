// What the benchmark loop needs from a runtime binding: a prefill/decode LLM
// with a KV cache, plus the errors that map to the runner's exit codes.
#ifndef LLM_RUNNER_ENGINE_H_
#define LLM_RUNNER_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__APPLE__)
#include <TargetConditionals.h>
#endif

// Whether this build has LiteRT's CompiledModel C API (compiled_model_engine.cc
// and weight_bytes.cc use it). Linux and Android link liblitert-lm.so, which
// exports it; the iOS app links the TensorFlowLiteC framework, which has the
// TFLite C API and XNNPACK but no CompiledModel (ios/README.md says why), so
// there the interpreter engine is the default and the only one. A build that
// links a LiteRT with CompiledModel on iOS may define it to 1.
#ifndef LLM_RUNNER_HAS_COMPILED_MODEL
#if defined(TARGET_OS_IPHONE) && TARGET_OS_IPHONE
#define LLM_RUNNER_HAS_COMPILED_MODEL 0
#else
#define LLM_RUNNER_HAS_COMPILED_MODEL 1
#endif
#endif

struct TfLiteXNNPackDelegateOptions;  // litert_c_api.h

namespace llm_runner {

enum ExitCode { kExitOk = 0, kExitUsage = 2, kExitModel = 3, kExitRuntime = 4 };

// Carries the exit code and the one-line message main() prints to stderr.
class RunnerError : public std::runtime_error {
 public:
  RunnerError(ExitCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

[[noreturn]] void FailModel(const std::string& path, const std::string& reason);
[[noreturn]] void FailRuntime(const std::string& what);

struct ModelInfo {
  int prefill_len = 0;
  int kv_len = 0;
  int vocab = 0;
  int num_layers = 0;  // number of kv_cache_k_i / kv_cache_v_i pairs
  // Bytes of all KV cache tensors. The static-shape export attends over the
  // whole buffer at every decode step, so each step reads all of it,
  // whatever the depth.
  size_t kv_cache_bytes = 0;
};

// One event of a runtime's profiler (--profile; profiler.h attributes them).
struct ProfileEvent {
  enum Kind {
    kNode,          // a node the interpreter invoked: a builtin or custom op
    // A delegate's kernel node. Neither profiler reports one, so its span is
    // inferred from where its operators' events fall between the nodes
    // around them (profiler.cc); index numbers the kernels of a recording.
    kDelegateNode,
    // An operator inside the last kDelegateNode before it, timed by the
    // delegate itself (XNNPACK: whole microseconds); index is its place in
    // the kernel.
    kDelegateOp,
    // The runtime's own span: LiteRT's Invoke of a subgraph, its buffer
    // registration and sync around a run.
    kRuntime,
  };
  Kind kind = kNode;
  std::string name;
  int64_t index = -1;
  int64_t subgraph = -1;
  double start_us = 0;  // since the recording started; none for kDelegateOp
  double us = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const ModelInfo& info() const = 0;
  // Zeroes every KV cache slot.
  virtual void ResetKvCache() = 0;
  // Runs `prefill` on info().prefill_len tokens at positions
  // start..start+P-1, on top of what the cache already holds (start > 0 is
  // the untimed --depth fill).
  virtual void Prefill(const std::vector<int32_t>& tokens, int32_t start) = 0;
  // Runs `decode` on one token; returns info().vocab logits that stay valid
  // until the next call.
  virtual const float* Decode(int32_t token, int32_t position) = 0;
  // With EngineOptions::profile: records op events from StartProfile (which
  // drops earlier ones) to StopProfile, which returns them in order.
  virtual void StartProfile() = 0;
  virtual std::vector<ProfileEvent> StopProfile() = 0;
  // Which profiler records: "telemetry" or "litert".
  virtual const char* profiler_name() const = 0;
};

// How an engine sets up XNNPACK; both engines honour every field.
struct EngineOptions {
  int threads = 4;
  // XNNPACK's weight cache file; empty: none, every load packs the weights
  // in memory. XNNPACK loads a finished cache from it, or else packs the
  // weights and writes them there (llm_runner.cc checks which happened).
  std::string weight_cache;
  // XNNPACK's FORCE_FP16 flag: fp32 operators computed in fp16.
  bool fp16_arithmetic = false;
  // Attach the runtime's profiler at creation (it has to be there when
  // XNNPACK prepares its kernel, for XNNPACK to time its operators), so that
  // StartProfile/StopProfile work. Its hooks run on every invoke, recording
  // or not: an engine with it on is for --profile's repetition only.
  bool profile = false;
};

// Fails with kExitUsage where !LLM_RUNNER_HAS_COMPILED_MODEL.
std::unique_ptr<Engine> CreateCompiledModelEngine(const std::string& path,
                                                  const EngineOptions& options);
std::unique_ptr<Engine> CreateInterpreterEngine(const std::string& path,
                                                const EngineOptions& options);

// TfLiteXNNPackDelegateOptionsDefault(), checked to read as litert_c_api.h
// lays the struct out (FailRuntime otherwise): both engines take XNNPACK's
// default flags from it.
::TfLiteXNNPackDelegateOptions CheckedXnnpackDefaults();

// Bytes of the model's constant buffers (the weights at their stored
// precision), each buffer counted once although prefill and decode share
// it: what a decode step streams from memory besides the KV cache. Walks the
// model with LiteRT's model API (weight_bytes.cc); 0 where that fails or
// the build has no LiteRT model API (!LLM_RUNNER_HAS_COMPILED_MODEL).
size_t CountWeightBytes(const std::string& path);

// Signature I/O naming shared by both engines (litert-torch export).
extern const char kTokensName[];
extern const char kInputPosName[];
extern const char kLogitsName[];
bool IsKvCacheName(const std::string& name);  // kv_cache_k_* / kv_cache_v_*
bool IsKvKeyName(const std::string& name);    // kv_cache_k_*

// KV cache length from layer 0's K and V input shapes. litert-torch's default
// layout stores both as [1, kv_len, heads, head_dim]; its transposed layout
// (the one LiteRT-LM's engine reads, used for .litertlm bundles) stores K as
// [1, heads, kv_len, head_dim] and V as [1, heads, head_dim, kv_len]. The
// cache is bound as opaque bytes, so only its length depends on the layout.
// Equal K and V shapes read as the default layout (a transposed cache with
// kv_len == head_dim cannot be told apart). Fails with kExitModel otherwise.
int KvCacheLength(const std::string& path, const std::vector<int>& k_dims,
                  const std::vector<int>& v_dims);

// Index of the prefill and decode signatures among `keys`: "decode", and
// "prefill" or else the one key starting with "prefill" (litert-torch's
// convert_to_tflite names it prefill_<len>). Fails with kExitModel.
struct SignaturePair {
  size_t prefill = 0;
  size_t decode = 0;
};
SignaturePair FindSignatures(const std::string& path,
                             const std::vector<std::string>& keys);

// Checks the I/O names of both signatures and returns a ModelInfo with
// num_layers filled in; the engines fill the shapes.
ModelInfo CheckSignatureNames(const std::string& path,
                              const std::vector<std::string>& prefill_inputs,
                              const std::vector<std::string>& prefill_outputs,
                              const std::vector<std::string>& decode_inputs,
                              const std::vector<std::string>& decode_outputs);

// 64-byte aligned, zero-initialised host memory (LiteRT's host-buffer
// alignment, and a cache line). posix_memalign exists on glibc, bionic and
// Darwin.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  void Zero();

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace llm_runner

#endif  // LLM_RUNNER_ENGINE_H_
