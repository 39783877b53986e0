// --profile: where the time of one repetition goes, op by op. The runtime's
// own profiler records every node the interpreter invokes (a builtin op such
// as FULLY_CONNECTED, or a delegate's kernel node such as
// TfLiteXNNPackDelegate) and, inside a delegate's node, every XNNPACK
// operator XNNPACK timed; Attribute turns those events into rows that each
// own a share of the time, so a phase's rows add up to its time in the graph.
//
// The interpreter engine records through TFLite's telemetry profiler
// (TelemetryRecorder), the CompiledModel engine through LiteRT's profiler
// (ReadLiteRtEvents); both see the same tflite::Profiler events.
#ifndef LLM_RUNNER_PROFILER_H_
#define LLM_RUNNER_PROFILER_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine.h"

struct TfLiteTelemetryProfilerStruct;  // litert_c_api.h
typedef struct LiteRtProfilerT* LiteRtProfiler;

namespace llm_runner {

// One row of a phase: time spent in one place and counted in no other row.
struct OpTime {
  // kNode: a TFLite builtin or custom op (FULLY_CONNECTED,
  // odml.update_kv_cache) run by its own kernel, outside any delegate.
  // kDelegateOp: an XNNPACK operator ("Fully Connected (NC, QD8, F32, QC8W)
  // GEMM"). kDelegateNode: the part of an XNNPACK kernel node's span its
  // operators' timings do not cover (the delegate's own work, and XNNPACK's
  // rounding of each timing down to whole microseconds). kRuntime: the part
  // of a runtime span in no node (the interpreter between nodes, LiteRT's
  // buffer handling).
  ProfileEvent::Kind kind = ProfileEvent::kNode;
  std::string name;
  int64_t node = -1;      // kNode: the TFLite node's index in its subgraph
  int64_t subgraph = -1;  // kNode, kRuntime: the subgraph (one per signature)
  int64_t kernel = -1;    // delegate rows: which XNNPACK kernel node of the phase
  int64_t op = -1;        // kDelegateOp: the operator's place in its kernel
  double us = 0;

  bool delegate() const {
    return kind == ProfileEvent::kDelegateNode || kind == ProfileEvent::kDelegateOp;
  }
};

struct PhaseProfile {
  // The phase's wall clock in the profiled repetition, profiler on, taken
  // like a measured sample's (around the engine call, argmax included for a
  // decode step): what the rows' total is held to.
  double wall_s = 0;
  std::vector<OpTime> ops;  // in invocation order
};

struct Profile {
  std::string profiler;  // "telemetry" (interpreter) or "litert" (CompiledModel)
  PhaseProfile prefill;  // the prompt's prefill
  PhaseProfile decode;   // the repetition's last decode step
};

// The name of the XNNPACK delegate's kernel node (its TfLiteRegistration's):
// both engines delegate to XNNPACK alone.
extern const char kXnnpackKernelName[];

// Rows from one phase's events (Engine::StopProfile), in order: each node,
// kernel node and runtime span its own time, less the spans nested in it;
// each kernel node's operators (the kDelegateOp events after it) their
// timings, and the kernel node what is left.
std::vector<OpTime> Attribute(const std::vector<ProfileEvent>& events);

// The interpreter's telemetry profiler: callbacks that record node and
// delegate operator events between Start and Stop. It must outlive the
// interpreter it is attached to (TfLiteInterpreterOptionsSetTelemetryProfiler).
class TelemetryRecorder {
 public:
  TelemetryRecorder();
  TelemetryRecorder(const TelemetryRecorder&) = delete;
  TelemetryRecorder& operator=(const TelemetryRecorder&) = delete;
  ~TelemetryRecorder();

  using Clock = std::chrono::steady_clock;

  TfLiteTelemetryProfilerStruct* get() { return callbacks_; }
  void Start();  // drops what was recorded before
  std::vector<ProfileEvent> Stop();
  // A span of the engine's own (kRuntime) while recording: the interpreter
  // has no profiler event for a whole invoke, nor for the engine's KV copy.
  void Span(const char* name, Clock::time_point begin, Clock::time_point end);

 private:
  struct Record {
    ProfileEvent event;
    // A node's begin and end; a delegate operator's report (the end of its
    // kernel's run, which reports every operator at once).
    Clock::time_point begin, end;
  };
  double Micros(Clock::time_point t) const;
  static uint32_t Begin(TfLiteTelemetryProfilerStruct* profiler,
                        const char* op_name, int64_t op_idx,
                        int64_t subgraph_idx);
  static void End(TfLiteTelemetryProfilerStruct* profiler, uint32_t handle);
  static void Timed(TfLiteTelemetryProfilerStruct* profiler,
                    const char* op_name, uint64_t elapsed_us, int64_t op_idx,
                    int64_t subgraph_idx);

  TfLiteTelemetryProfilerStruct* callbacks_;  // owned; data points here
  bool recording_ = false;
  Clock::time_point origin_;
  std::vector<Record> records_;
};

// Times its scope as a TelemetryRecorder span; nothing, not even a clock
// read, without a recorder (an engine created without the profiler).
class ScopedSpan {
 public:
  ScopedSpan(TelemetryRecorder* recorder, const char* name)
      : recorder_(recorder), name_(name) {
    if (recorder_ != nullptr) begin_ = TelemetryRecorder::Clock::now();
  }
  ScopedSpan(const ScopedSpan&) = delete;
  ScopedSpan& operator=(const ScopedSpan&) = delete;
  ~ScopedSpan() {
    if (recorder_ != nullptr) {
      recorder_->Span(name_, begin_, TelemetryRecorder::Clock::now());
    }
  }

 private:
  TelemetryRecorder* recorder_;
  const char* name_;
  TelemetryRecorder::Clock::time_point begin_;
};

#if LLM_RUNNER_HAS_COMPILED_MODEL
// The events a LiteRT profiler recorded: a run's own spans, its nodes, each
// kernel's operators, and a span for the whole run; `runs_us` are the
// LiteRtRunCompiledModel calls' times, as the engine took them. Fails with
// kExitRuntime where they do not read as litert_c_api.h lays them out.
std::vector<ProfileEvent> ReadLiteRtEvents(LiteRtProfiler profiler,
                                           const std::vector<double>& runs_us);
#endif

}  // namespace llm_runner

#endif  // LLM_RUNNER_PROFILER_H_
