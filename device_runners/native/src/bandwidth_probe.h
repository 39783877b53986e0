// Streaming-read memory bandwidth of the cores the runner is pinned to: the
// roof that decode speed sits under (each decode step streams every weight
// and the whole KV cache from memory), measured in the same run because the
// figure moves between runs.
#ifndef LLM_RUNNER_BANDWIDTH_PROBE_H_
#define LLM_RUNNER_BANDWIDTH_PROBE_H_

#include <cstddef>
#include <vector>

#if defined(__APPLE__)
#include <TargetConditionals.h>
#endif

// The probe runs in a forked child (below), and iOS apps may not fork: there
// ProbeReadBandwidth fails with kExitUsage and the harness passes
// --bandwidth-probe-mb 0 (ios/README.md).
#ifndef LLM_RUNNER_CAN_FORK
#if defined(TARGET_OS_IPHONE) && TARGET_OS_IPHONE
#define LLM_RUNNER_CAN_FORK 0
#else
#define LLM_RUNNER_CAN_FORK 1
#endif
#endif

namespace llm_runner {

struct Bandwidth {
  size_t probe_bytes = 0;
  int threads = 0;
  std::vector<double> passes_gb_s;  // one per pass, in run order; 1 GB = 1e9 B

  double Best() const;
  double Median() const;
};

// Reads a `bytes`-long buffer `passes` times, split in contiguous chunks over
// `threads` std::threads (which inherit the process's CPU affinity).
//
// It runs in a forked child process: peak RSS (ru_maxrss, VmHWM) is a
// high-water mark that cannot be reset, so a buffer allocated here would
// show in the model's peak memory. Call it before the runtime has started
// threads. Fails with kExitRuntime, or kExitUsage where !LLM_RUNNER_CAN_FORK.
Bandwidth ProbeReadBandwidth(size_t bytes, int threads, int passes);

}  // namespace llm_runner

#endif  // LLM_RUNNER_BANDWIDTH_PROBE_H_
