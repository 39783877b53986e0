// What one llm_runner run measured (RunnerReport), and the one function that
// writes it as the JSON document the runner prints on stdout.
//
// The document is the harness's input: its keys, their order and the number
// formatting are a contract (the harness parses it and tests/test_runner.py
// checks it), so ToJson is the only place that spells them.
#ifndef LLM_RUNNER_REPORT_H_
#define LLM_RUNNER_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bandwidth_probe.h"
#include "memory_split.h"
#include "power_sampler.h"
#include "profiler.h"

namespace llm_runner {

// One measured repetition, as the clock gave it. The rates and milliseconds
// the document shows (prefill_tok_s, decode_tok_s, ttft_ms) are derived by
// ToJson alone, from the report's own prefill_len and decode_len: a figure
// can then never have been computed against another length than the one
// printed beside it, and the arithmetic has exactly one copy.
struct Sample {
  double prefill_s = 0;     // the prompt's prefill
  double decode_s = 0;      // all decode steps
  double first_step_s = 0;  // decode step 0, which yields the first token
};

// One of a decode step's highest logits (--top-k).
struct TopLogit {
  int32_t id = 0;
  float logit = 0;
};

// Fields in the document's order. std::optional marks the ones printed as
// null when absent.
struct RunnerReport {
  // Who measured.
  std::string runner;
  std::string runner_version;
  std::string api;  // compiled_model or interpreter
  std::string runtime;
  std::string runtime_version;

  // What was measured: the model and the workload.
  std::string model;  // the path as given
  int64_t model_bytes = 0;
  int threads = 0;
  int prefill_len = 0;
  int decode_len = 0;  // tokens per repetition
  int depth = 0;
  int kv_len = 0;
  int vocab = 0;
  int num_layers = 0;
  int64_t kv_cache_bytes = 0;
  std::optional<int64_t> weight_bytes;  // absent: the model walk failed
  int warmup = 0;

  // The measurements, in seconds where timed. With a weight cache, init_s
  // is the first load in the process as weight_cache says it went (cold: it
  // packed the weights and wrote the cache; warm: it read them from the
  // cache), and init_warm_s always reads the cache the first load left.
  double init_s = 0;                   // cold: the first load in the process
  std::optional<double> init_warm_s;   // absent: --no-warm-init
  std::vector<Sample> samples;         // measured repetitions, in run order
  std::vector<int32_t> tokens;         // the last repetition's greedy tokens
  // The last repetition's top-k logits per decode step, highest first;
  // empty without --top-k.
  std::vector<std::vector<TopLogit>> top_logits;
  int64_t peak_rss_kb = 0;             // getrusage's ru_maxrss, in KiB everywhere
  // The OS's peak figure: VmHWM on Linux/Android, the phys_footprint peak on
  // iOS (what jetsam counts; TASK_VM_INFO, as on macOS). Absent where
  // unreadable.
  std::optional<int64_t> vmhwm_kb;
  std::optional<Bandwidth> bandwidth;  // absent: --bandwidth-probe-mb 0
  bool xnnpack = false;                // the engine runs on XNNPACK kernels
  // XNNPACK computed fp32 operators in fp16 (its FORCE_FP16 flag): asked
  // for with --fp16-arithmetic and the CPU has fp16 arithmetic.
  bool fp16_arithmetic = false;
  // XNNPACK's weight cache file (--weight-cache) at the first load: "off"
  // (none), "cold" (absent or unusable: that load packed the weights and
  // wrote it) or "warm" (a finished cache that load read and left as it
  // was).
  std::string weight_cache = "off";
  std::optional<int64_t> weight_cache_bytes;  // its size at the end; absent: off
  // Resident memory by part after the load, after the last repetition's
  // prefill and at the end of its decode (memory_split.h); empty where the
  // OS does not tell (Darwin).
  std::vector<MemorySplit> memory;
  // --profile: op timings of one more repetition, run after the measured
  // ones on an engine of its own with the profiler attached (profiler.h);
  // absent without --profile.
  std::optional<Profile> profile;
  // --power-file / --power-counter: the readings and the windows they are
  // integrated over (power_sampler.h); absent without them.
  std::optional<PowerTrace> power;
};

// The report as one line of JSON, without a trailing newline.
std::string ToJson(const RunnerReport& report);

}  // namespace llm_runner

#endif  // LLM_RUNNER_REPORT_H_
