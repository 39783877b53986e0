// The subset of the LiteRT CompiledModel C API and the TFLite C API that
// llm_runner calls, declared by hand because no wheel ships the headers.
//
// Prototypes follow google-ai-edge/LiteRT litert/c/*.h and tensorflow
// tensorflow/lite/core/c/c_api.h, xnnpack_delegate.h, and were checked against
// the exported code of liblitert-lm.so from litert-lm-api 0.18.1
// (TfLiteVersion() == "2.23.0"). Traps found on the way:
//  - LiteRtCreateModelFromFile takes the environment first (3 arguments);
//    older headers declare (filename, model).
//  - CPU options are the "Lrt*" API (LrtCreateCpuOptions on an LrtCpuOptions*,
//    turned into opaque options with LrtGetOpaqueCpuOptionsData), not the older
//    LiteRtCreateCpuOptions/LiteRtFindCpuOptions pair.
//  - LiteRtCreateModelFromFile does not verify the flatbuffer: a truncated
//    file crashes it (SIGSEGV in litert::internal::LoadModelFromFile), so
//    the runner verifies files with the TFLite loader first.
//  - Structs whose layout changes between releases stay opaque here or are
//    checked at run time: see LiteRtRankedTensorType and
//    TfLiteXNNPackDelegateOptions below.
#ifndef LLM_RUNNER_LITERT_C_API_H_
#define LLM_RUNNER_LITERT_C_API_H_

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------- LiteRT ----

typedef int LiteRtStatus;  // enum in litert_common.h; 0 is kLiteRtStatusOk
enum { kLiteRtStatusOk = 0 };

typedef int LiteRtHwAcceleratorSet;
enum { kLiteRtHwAcceleratorCpu = 1 };

// LiteRtElementType values equal TfLiteType values.
enum { kLiteRtElementTypeFloat32 = 1, kLiteRtElementTypeInt32 = 2 };

typedef size_t LiteRtParamIndex;

typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtSubgraphT* LiteRtSubgraph;
typedef struct LiteRtOpT* LiteRtOp;
typedef struct LiteRtWeightsT* LiteRtWeights;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT* LiteRtOpaqueOptions;
typedef struct LrtCpuOptions LrtCpuOptions;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;
typedef struct LiteRtTensorBufferRequirementsT* LiteRtTensorBufferRequirements;
typedef struct LiteRtEnvOption LiteRtEnvOption;  // only passed as NULL here

// Opaque on purpose: {LiteRtElementType; LiteRtLayout} whose LiteRtLayout
// (rank bit-field, dimensions, strides) has changed across releases. Callers
// pass generously sized storage; see RankedType for the few
// fields llm_runner reads (compiled_model_engine.cc).
typedef struct LiteRtRankedTensorType LiteRtRankedTensorType;

const char* LiteRtGetStatusString(LiteRtStatus status);

LiteRtStatus LiteRtCreateEnvironment(int num_options,
                                     const LiteRtEnvOption* options,
                                     LiteRtEnvironment* environment);
void LiteRtDestroyEnvironment(LiteRtEnvironment environment);

LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment environment,
                                       const char* filename,
                                       LiteRtModel* model);
void LiteRtDestroyModel(LiteRtModel model);

LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model,
                                         LiteRtParamIndex* num_signatures);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model,
                                     LiteRtParamIndex signature_index,
                                     LiteRtSignature* signature);
LiteRtStatus LiteRtGetSignatureKey(LiteRtSignature signature,
                                   const char** signature_key);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature signature,
                                         LiteRtParamIndex* num_inputs);
LiteRtStatus LiteRtGetSignatureInputName(LiteRtSignature signature,
                                         LiteRtParamIndex input_idx,
                                         const char** input_name);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature signature,
                                                  LiteRtParamIndex input_idx,
                                                  LiteRtTensor* tensor);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature signature,
                                          LiteRtParamIndex* num_outputs);
LiteRtStatus LiteRtGetSignatureOutputName(LiteRtSignature signature,
                                          LiteRtParamIndex output_idx,
                                          const char** output_name);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature signature,
                                                   LiteRtParamIndex output_idx,
                                                   LiteRtTensor* tensor);
LiteRtStatus LiteRtGetRankedTensorType(
    LiteRtTensor tensor, LiteRtRankedTensorType* ranked_tensor_type);

// Graph walk for the weight count (weight_bytes.cc). Every tensor has
// weights; those of a non-constant tensor are 0 bytes long.
LiteRtStatus LiteRtGetNumModelSubgraphs(LiteRtModel model,
                                        LiteRtParamIndex* num_subgraphs);
LiteRtStatus LiteRtGetModelSubgraph(LiteRtModel model,
                                    LiteRtParamIndex subgraph_index,
                                    LiteRtSubgraph* subgraph);
LiteRtStatus LiteRtGetNumSubgraphOps(LiteRtSubgraph subgraph,
                                     LiteRtParamIndex* num_ops);
LiteRtStatus LiteRtGetSubgraphOp(LiteRtSubgraph subgraph,
                                 LiteRtParamIndex op_index, LiteRtOp* op);
LiteRtStatus LiteRtGetNumOpInputs(LiteRtOp op, LiteRtParamIndex* num_inputs);
LiteRtStatus LiteRtGetOpInput(LiteRtOp op, LiteRtParamIndex input_index,
                              LiteRtTensor* input);
LiteRtStatus LiteRtGetTensorWeights(LiteRtTensor tensor,
                                    LiteRtWeights* weights);
LiteRtStatus LiteRtGetWeightsBytes(LiteRtWeights weights, const void** addr,
                                   size_t* size);
// Ids start at 1. Counting each id once gave exactly the file's distinct
// buffers on every recipe tried (prefill and decode share them).
LiteRtStatus LiteRtGetWeightsBufferId(LiteRtWeights weights,
                                      int32_t* buffer_id);

// Block-wise quantized weights (int4 block 32/128) keep their scales in a
// separate constant tensor that is no op's input but is read with them.
typedef int LiteRtQuantizationTypeId;  // enum in litert_model_types.h
enum { kLiteRtQuantizationBlockWise = 3 };
LiteRtStatus LiteRtGetQuantizationTypeId(LiteRtTensor tensor,
                                         LiteRtQuantizationTypeId* q_type_id);
// The three fields were checked against this library (block_size read back
// 32 for a block-32 model); the tail is storage margin, as for
// TfLiteXNNPackDelegateOptions, should a release grow the struct.
typedef struct LiteRtQuantizationBlockWise {
  LiteRtTensor scales;
  LiteRtTensor zero_points;  // NULL for symmetric quantization
  int32_t block_size;
  uint64_t reserved[13];
} LiteRtQuantizationBlockWise;
LiteRtStatus LiteRtGetBlockWiseQuantization(
    LiteRtTensor tensor, LiteRtQuantizationBlockWise* block_wise_quantization);

LiteRtStatus LiteRtCreateOptions(LiteRtOptions* options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(
    LiteRtOptions options, LiteRtHwAcceleratorSet hardware_accelerators);
// Takes ownership of `opaque_options` on success.
LiteRtStatus LiteRtAddOpaqueOptions(LiteRtOptions options,
                                    LiteRtOpaqueOptions opaque_options);
LiteRtStatus LiteRtCreateOpaqueOptions(const char* payload_identifier,
                                       void* payload_data,
                                       void (*payload_destructor)(void*),
                                       LiteRtOpaqueOptions* options);
void LiteRtDestroyOpaqueOptions(LiteRtOpaqueOptions options);

LiteRtStatus LrtCreateCpuOptions(LrtCpuOptions** options);
void LrtDestroyCpuOptions(LrtCpuOptions* options);
LiteRtStatus LrtSetCpuOptionsNumThread(LrtCpuOptions* options,
                                       int num_threads);
// Replaces the XNNPACK delegate's flags (TfLiteXNNPackDelegateOptions.flags)
// as a whole: callers start from TfLiteXNNPackDelegateOptionsDefault().flags,
// which is what the accelerator uses when this is never called.
LiteRtStatus LrtSetCpuOptionsXNNPackFlags(LrtCpuOptions* options,
                                          uint32_t flags);
// XNNPACK's weight cache file (TfLiteXNNPackDelegateOptions.
// weight_cache_file_path); the string is copied. It travels to the
// accelerator inside a TOML line, unescaped: a path holding '"' or a line
// break would reach XNNPACK as another path, so the runner refuses those.
LiteRtStatus LrtSetCpuOptionsXnnPackWeightCachePath(LrtCpuOptions* options,
                                                    const char* path);
LiteRtStatus LrtGetOpaqueCpuOptionsData(const LrtCpuOptions* options,
                                        const char** identifier,
                                        void** payload,
                                        void (**payload_deleter)(void*));

LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment environment,
                                       LiteRtModel model,
                                       LiteRtOptions compilation_options,
                                       LiteRtCompiledModel* compiled_model);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled_model);
// The returned requirements stay owned by the compiled model.
LiteRtStatus LiteRtGetCompiledModelInputBufferRequirements(
    LiteRtCompiledModel compiled_model, LiteRtParamIndex signature_index,
    LiteRtParamIndex input_index,
    LiteRtTensorBufferRequirements* buffer_requirements);
LiteRtStatus LiteRtGetCompiledModelOutputBufferRequirements(
    LiteRtCompiledModel compiled_model, LiteRtParamIndex signature_index,
    LiteRtParamIndex output_index,
    LiteRtTensorBufferRequirements* buffer_requirements);
LiteRtStatus LiteRtGetTensorBufferRequirementsBufferSize(
    LiteRtTensorBufferRequirements requirements, size_t* buffer_size);

// `host_buffer_addr` must be 64-byte aligned; a NULL deallocator leaves the
// memory owned by the caller.
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(
    const LiteRtRankedTensorType* tensor_type, void* host_buffer_addr,
    size_t host_buffer_size, void (*deallocator)(void*),
    LiteRtTensorBuffer* buffer);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buffer);

LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled_model,
                                    LiteRtParamIndex signature_index,
                                    size_t num_input_buffers,
                                    LiteRtTensorBuffer* input_buffers,
                                    size_t num_output_buffers,
                                    LiteRtTensorBuffer* output_buffers);

// ------------------------------------------------------------------ TFLite --

typedef int TfLiteStatus;  // enum; 0 is kTfLiteOk
enum { kTfLiteOk = 0 };
typedef int TfLiteType;  // enum; same values as LiteRtElementType

typedef struct TfLiteModel TfLiteModel;
typedef struct TfLiteInterpreterOptions TfLiteInterpreterOptions;
typedef struct TfLiteInterpreter TfLiteInterpreter;
typedef struct TfLiteSignatureRunner TfLiteSignatureRunner;
typedef struct TfLiteTensor TfLiteTensor;
typedef struct TfLiteOpaqueDelegateStruct TfLiteOpaqueDelegate;

const char* TfLiteVersion(void);

TfLiteModel* TfLiteModelCreateFromFile(const char* model_path);
// Verifies the flatbuffer and reports problems to `reporter`, not stderr.
TfLiteModel* TfLiteModelCreateFromFileWithErrorReporter(
    const char* model_path,
    void (*reporter)(void* user_data, const char* format, va_list args),
    void* user_data);
void TfLiteModelDelete(TfLiteModel* model);

TfLiteInterpreterOptions* TfLiteInterpreterOptionsCreate(void);
void TfLiteInterpreterOptionsDelete(TfLiteInterpreterOptions* options);
void TfLiteInterpreterOptionsSetNumThreads(TfLiteInterpreterOptions* options,
                                           int32_t num_threads);
void TfLiteInterpreterOptionsAddDelegate(TfLiteInterpreterOptions* options,
                                         TfLiteOpaqueDelegate* delegate);

TfLiteInterpreter* TfLiteInterpreterCreate(
    const TfLiteModel* model, const TfLiteInterpreterOptions* options);
void TfLiteInterpreterDelete(TfLiteInterpreter* interpreter);
int32_t TfLiteInterpreterGetSignatureCount(const TfLiteInterpreter* interpreter);
const char* TfLiteInterpreterGetSignatureKey(
    const TfLiteInterpreter* interpreter, int32_t signature_index);
TfLiteSignatureRunner* TfLiteInterpreterGetSignatureRunner(
    const TfLiteInterpreter* interpreter, const char* signature_key);

size_t TfLiteSignatureRunnerGetInputCount(const TfLiteSignatureRunner* runner);
const char* TfLiteSignatureRunnerGetInputName(
    const TfLiteSignatureRunner* runner, int32_t input_index);
TfLiteTensor* TfLiteSignatureRunnerGetInputTensor(TfLiteSignatureRunner* runner,
                                                  const char* input_name);
size_t TfLiteSignatureRunnerGetOutputCount(const TfLiteSignatureRunner* runner);
const char* TfLiteSignatureRunnerGetOutputName(
    const TfLiteSignatureRunner* runner, int32_t output_index);
const TfLiteTensor* TfLiteSignatureRunnerGetOutputTensor(
    const TfLiteSignatureRunner* runner, const char* output_name);
TfLiteStatus TfLiteSignatureRunnerAllocateTensors(
    TfLiteSignatureRunner* runner);
TfLiteStatus TfLiteSignatureRunnerInvoke(TfLiteSignatureRunner* runner);
void TfLiteSignatureRunnerDelete(TfLiteSignatureRunner* runner);

TfLiteType TfLiteTensorType(const TfLiteTensor* tensor);
int32_t TfLiteTensorNumDims(const TfLiteTensor* tensor);
int32_t TfLiteTensorDim(const TfLiteTensor* tensor, int32_t dim_index);
size_t TfLiteTensorByteSize(const TfLiteTensor* tensor);
void* TfLiteTensorData(const TfLiteTensor* tensor);

// Force FP16 inference for FP32 operators (xnnpack_delegate.h).
#define TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16 0x00000004

struct TfLiteXNNPackDelegateWeightsCache;

// The fields of TFLite 2.23's struct (64 bytes; LiteRT 2.2.0's, which the iOS
// framework is built from, has the same ones). The runner sets num_threads,
// flags and weight_cache_file_path and leaves the rest at the library's
// defaults; where it touches more than num_threads it first checks that the
// defaults read as this layout says (weight_cache_file_descriptor == -1,
// interpreter_engine.cc). The struct has grown over time and is returned
// through a hidden pointer (sret) on x86-64 and arm64 alike, so the reserved
// tail keeps a larger future version's writes inside our storage.
typedef struct TfLiteXNNPackDelegateOptions {
  int32_t num_threads;
  uint32_t runtime_flags;
  uint32_t flags;  // TFLITE_XNNPACK_DELEGATE_FLAG_*
  struct TfLiteXNNPackDelegateWeightsCache* weights_cache;
  bool handle_variable_ops;
  // Read when weights_cache is NULL: a finished cache there is loaded, else
  // the weights are packed and written there (XNNPACK's LoadOrStartBuild).
  const char* weight_cache_file_path;
  int weight_cache_file_descriptor;  // -1: none
  void* weight_cache_provider;
  bool weight_cache_lock_memory;
  uint64_t reserved[24];  // 256 bytes in all, 8-byte aligned like the original
} TfLiteXNNPackDelegateOptions;

TfLiteXNNPackDelegateOptions TfLiteXNNPackDelegateOptionsDefault(void);
TfLiteOpaqueDelegate* TfLiteXNNPackDelegateCreate(
    const TfLiteXNNPackDelegateOptions* options);
void TfLiteXNNPackDelegateDelete(TfLiteOpaqueDelegate* delegate);

// -------------------------------------------------------------- profiling --
// What --profile uses (profiler.h). Both profilers are TFLite's
// tflite::Profiler underneath, fed by the interpreter (one event per node it
// invokes: a builtin op, or a delegate's kernel node) and by the XNNPACK
// delegate (one event per XNNPACK operator inside its kernel node, timed by
// XNNPACK itself, when the delegate was prepared with a profiler attached).

// tflite::Profiler::EventType bits (tflite/core/api/profiler.h).
enum {
  kTfLiteProfileDefault = 1 << 0,                  // a span, e.g. Invoke
  kTfLiteProfileOperatorInvoke = 1 << 1,           // metadata: node, subgraph
  kTfLiteProfileDelegateOperatorInvoke = 1 << 2,   // metadata: delegate's op
  kTfLiteProfileDelegateProfiledOperatorInvoke = 1 << 3,
};

// TFLite's telemetry profiler (tflite/profiling/telemetry/c/profiler.h): a
// struct of callbacks the interpreter calls. Its header says the struct is
// not ABI-stable; these seven members are the layout since TFLite 2.13 and in
// 2.23. The interpreter passes on node events (Begin/End) and delegate
// operator events that carry their own duration (ReportOpInvokeEvent, in
// microseconds) and drops every other kind.
typedef struct TfLiteTelemetrySettings TfLiteTelemetrySettings;  // unread
typedef struct TfLiteTelemetryProfilerStruct {
  void* data;
  void (*ReportTelemetryEvent)(struct TfLiteTelemetryProfilerStruct* profiler,
                               const char* event_name, uint64_t status);
  void (*ReportTelemetryOpEvent)(
      struct TfLiteTelemetryProfilerStruct* profiler, const char* event_name,
      int64_t op_idx, int64_t subgraph_idx, uint64_t status);
  void (*ReportSettings)(struct TfLiteTelemetryProfilerStruct* profiler,
                         const char* setting_name,
                         const TfLiteTelemetrySettings* settings);
  uint32_t (*ReportBeginOpInvokeEvent)(
      struct TfLiteTelemetryProfilerStruct* profiler, const char* op_name,
      int64_t op_idx, int64_t subgraph_idx);
  void (*ReportEndOpInvokeEvent)(struct TfLiteTelemetryProfilerStruct* profiler,
                                 uint32_t event_handle);
  void (*ReportOpInvokeEvent)(struct TfLiteTelemetryProfilerStruct* profiler,
                              const char* op_name, uint64_t elapsed_time,
                              int64_t op_idx, int64_t subgraph_idx);
} TfLiteTelemetryProfilerStruct;

// The profiler must outlive every interpreter created with these options
// (c_api_experimental.h).
void TfLiteInterpreterOptionsSetTelemetryProfiler(
    TfLiteInterpreterOptions* options, TfLiteTelemetryProfilerStruct* profiler);

// LiteRT's profiler (litert/c/litert_profiler.h). A compiled model has one
// when its options enable profiling (runtime options, below); it records only
// between Start and Stop.
typedef struct LiteRtProfilerT* LiteRtProfiler;
typedef struct LrtRuntimeOptions LrtRuntimeOptions;

LiteRtStatus LrtCreateRuntimeOptions(LrtRuntimeOptions** options);
void LrtDestroyRuntimeOptions(LrtRuntimeOptions* options);
LiteRtStatus LrtSetRuntimeOptionsEnableProfiling(LrtRuntimeOptions* options,
                                                 bool enable_profiling);
LiteRtStatus LrtGetOpaqueRuntimeOptionsData(const LrtRuntimeOptions* options,
                                            const char** identifier,
                                            void** payload,
                                            void (**payload_deleter)(void*));
// The profiler stays owned by the compiled model; NULL without profiling.
LiteRtStatus LiteRtCompiledModelGetProfiler(LiteRtCompiledModel compiled_model,
                                            LiteRtProfiler* profiler);
LiteRtStatus LiteRtStartProfiler(LiteRtProfiler profiler);
LiteRtStatus LiteRtStopProfiler(LiteRtProfiler profiler);
LiteRtStatus LiteRtResetProfiler(LiteRtProfiler profiler);
LiteRtStatus LiteRtGetNumProfilerEvents(LiteRtProfiler profiler,
                                        int* num_events);

// One event (litert_profiler_event.h, ProfiledEventData). Its C++ definition
// holds tflite::profiling::memory::MemoryUsage twice, three 8-byte fields in
// this library; the header's C twin declares two, which would misread every
// event after the first. LiteRtGetProfilerEvents copies 104 bytes per event
// (read from its machine code, x86-64 0.18.1), which this layout matches on
// every LP64 target; profiler.cc checks what it reads.
typedef struct LiteRtProfiledEvent {
  const char* tag;             // owned by the profiler
  int32_t event_type;          // kTfLiteProfile* bits
  uint64_t start_timestamp_us;
  uint64_t elapsed_time_us;
  int64_t begin_mem_usage[3];
  int64_t end_mem_usage[3];
  int64_t event_metadata1;     // node index, or the delegate's operator index
  int64_t event_metadata2;     // subgraph index
  int32_t event_source;        // 0 LiteRT, 1 TFLite interpreter, 2 delegate
} LiteRtProfiledEvent;

// Fails unless `num_events` holds every recorded event.
LiteRtStatus LiteRtGetProfilerEvents(LiteRtProfiler profiler, int num_events,
                                     LiteRtProfiledEvent* events);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // LLM_RUNNER_LITERT_C_API_H_
