// Where the runner's resident memory is, read from the kernel at a phase of
// the run (after the load, after a prefill, at the end of a decode): the
// model file's mapped pages (the weights LiteRT reads in place), XNNPACK's
// weight cache file, other files (the runtime library, the binary), and
// anonymous memory (packed weights without a cache, the KV cache, the
// arena). The figures a regression in memory shows up in, part by part.
#ifndef LLM_RUNNER_MEMORY_SPLIT_H_
#define LLM_RUNNER_MEMORY_SPLIT_H_

#include <cstdint>
#include <optional>
#include <string>

namespace llm_runner {

struct MemorySplit {
  std::string phase;  // load | prefill | decode
  int64_t rss_kb = 0;
  int64_t pss_kb = 0;
  int64_t anonymous_kb = 0;     // Anonymous: heap, arena, KV cache, packed weights
  int64_t model_file_kb = 0;    // resident pages of the model file's mappings
  int64_t weight_cache_kb = 0;  // resident pages of the weight cache file's mappings
  int64_t other_file_kb = 0;    // every other file-backed page (libraries, the binary)
  int64_t private_dirty_kb = 0;
  int64_t swap_kb = 0;
};

// Reads /proc/self/smaps (Linux, Android): each mapping's Rss attributed to
// the model file, the weight cache file (paths as given; compared after
// realpath) or the rest. None where the file is unreadable (Darwin: no /proc).
std::optional<MemorySplit> ReadMemorySplit(const std::string& phase,
                                           const std::string& model_path,
                                           const std::string& weight_cache_path);

}  // namespace llm_runner

#endif  // LLM_RUNNER_MEMORY_SPLIT_H_
