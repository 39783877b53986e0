// llm_runner: llama-bench style prefill/decode benchmark of a litert-torch
// LLM export (.tflite with `prefill` and `decode` signatures) on LiteRT.
// Prints exactly one JSON document on stdout; logs go to stderr.
//
// Exit codes: 0 ok, 2 usage error, 3 model file missing/unreadable/corrupt,
// 4 runtime failure.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__APPLE__)
#include <mach/mach.h>
#include <sys/sysctl.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#elif defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bandwidth_probe.h"
#include "engine.h"
#include "litert_c_api.h"
#include "power_sampler.h"
#include "report.h"
#include "run_main.h"

namespace llm_runner {
namespace {

constexpr char kVersion[] = "0.1.0";
constexpr int kProbePasses = 5;

// The default --api: CompiledModel where the build has it, else the
// interpreter (the iOS app; engine.h).
#if LLM_RUNNER_HAS_COMPILED_MODEL
#define LLM_RUNNER_DEFAULT_API "compiled_model"
#else
#define LLM_RUNNER_DEFAULT_API "interpreter"
#endif
// The default --bandwidth-probe-mb: the harness's, or none where the probe
// cannot fork (the iOS app; bandwidth_probe.h).
#if LLM_RUNNER_CAN_FORK
#define LLM_RUNNER_DEFAULT_PROBE_MB "1024"
constexpr int kDefaultProbeMb = 1024;
#else
#define LLM_RUNNER_DEFAULT_PROBE_MB "0"
constexpr int kDefaultProbeMb = 0;
#endif

constexpr char kUsage[] =
    "usage: llm_runner --model PATH [--prefill N] [--decode N] [--threads N]\n"
    "                  [--warmup N] [--reps N] [--api compiled_model|interpreter]\n"
    "                  [--prompt-tokens T1,T2,...] [--depth N]\n"
    "                  [--bandwidth-probe-mb N] [--no-warm-init]\n"
    "                  [--top-k N] [--follow-tokens T1,T2,...]\n"
    "                  [--weight-cache PATH] [--fp16-arithmetic] [--profile]\n"
    "                  [--power-file PATH]... [--power-counter PATH]...\n"
    "                  [--power-hz N] [--power-idle-ms N]\n"
    "  --model PATH          .tflite with 'prefill' and 'decode' signatures\n"
    "  --prefill N           prompt length; must equal the prefill signature's\n"
    "                        length (default: that length)\n"
    "  --decode N            tokens generated per repetition (default 128)\n"
    "  --threads N           CPU threads (default 4)\n"
    "  --warmup N            repetitions run first and discarded (default 1)\n"
    "  --reps N              measured repetitions (default 5)\n"
    "  --api NAME            compiled_model or interpreter (default: "
    LLM_RUNNER_DEFAULT_API ")\n"
    "  --prompt-tokens LIST  comma-separated prompt token ids (default:\n"
    "                        1 + (i * 7919) % (vocab - 1))\n"
    "  --depth N             fill the KV cache up to position N (untimed prefill\n"
    "                        chunks, tokens by the default formula) so the timed\n"
    "                        decode starts at position max(P, N) (default 0)\n"
    "  --bandwidth-probe-mb N  measure streaming-read memory bandwidth over N MiB\n"
    "                        on --threads threads before loading the model\n"
    "                        (default " LLM_RUNNER_DEFAULT_PROBE_MB "; 0: no probe)\n"
    "  --no-warm-init        load the model once; by default it is loaded, torn\n"
    "                        down and loaded again (init_warm_ms), and the\n"
    "                        second instance is benchmarked\n"
    "  --top-k N             record the N highest logits of every decode step\n"
    "                        of the last repetition, outside the timed span\n"
    "                        (default 0: none); for comparing devices\n"
    "  --follow-tokens LIST  decode step i+1 feeds LIST[i] instead of step i's\n"
    "                        own greedy token (teacher forcing), so that two\n"
    "                        devices stay on one path after a near tie;\n"
    "                        `tokens` still records each step's own argmax\n"
    "  --weight-cache PATH   XNNPACK's weight cache file, as apps ship it: a\n"
    "                        finished cache there is read instead of packing\n"
    "                        the weights (weight_cache \"warm\"); otherwise the\n"
    "                        first load packs them and writes it (\"cold\": its\n"
    "                        init_ms includes that). init_warm_ms reads it in\n"
    "                        either case. The file's folder must exist.\n"
    "                        It must be this model's: XNNPACK matches weights\n"
    "                        by their place in the file, not their values, so\n"
    "                        another model's cache can give wrong results;\n"
    "                        name it by the model's content (the harness uses\n"
    "                        its sha256).\n"
    "                        Without it (weight_cache \"off\"), every load packs\n"
    "                        the weights in memory\n"
    "  --fp16-arithmetic     compute fp32 operators in fp16 (XNNPACK's\n"
    "                        FORCE_FP16) where the CPU has fp16 arithmetic\n"
    "                        (ARMv8.2 FP16, AVX512-FP16); fp16_arithmetic says\n"
    "                        whether it did\n"
    "  --profile             after the measured repetitions, one more on an\n"
    "                        engine of its own with the runtime's profiler on\n"
    "                        (after one unprofiled repetition there): time per\n"
    "                        op of its prefill and its last decode step, and\n"
    "                        each phase's wall time (`profile`). The measured\n"
    "                        engine never has a profiler attached\n"
    "  --power-file PATH     read this file's number every 1/--power-hz s from\n"
    "                        the idle window to the last repetition's end (a\n"
    "                        battery's current_now, voltage_now; repeatable)\n"
    "  --power-counter PATH  read this file's text at the start and end of the\n"
    "                        idle window and of every measured prefill and\n"
    "                        decode (RAPL's energy_uj; repeatable)\n"
    "  --power-hz N          --power-file's sampling rate (default 50)\n"
    "  --power-idle-ms N     with --power-file or --power-counter: after the\n"
    "                        warmup, an idle window of N ms before the measured\n"
    "                        repetitions, the baseline the harness subtracts\n"
    "                        (default 0). Readings, times and windows are in\n"
    "                        `power`, as read: units are the harness's\n"
    "  --help                print this help\n";

// The defaults are the harness's (its Workload), so that a bare run measures
// what the harness would.
struct Args {
  std::string model;
  int prefill = 0;  // 0: the model's prefill length
  int decode = 128;
  int threads = 4;
  int warmup = 1;
  int reps = 5;
  std::string api = LLM_RUNNER_DEFAULT_API;
  std::vector<int32_t> prompt_tokens;
  int depth = 0;
  int bandwidth_probe_mb = kDefaultProbeMb;
  bool warm_init = true;
  int top_k = 0;
  std::vector<int32_t> follow_tokens;
  std::string weight_cache;  // empty: none
  bool fp16_arithmetic = false;
  bool profile = false;
  std::vector<std::string> power_files;
  std::vector<std::string> power_counters;
  int power_hz = 50;
  int power_idle_ms = 0;

  bool power() const { return !power_files.empty() || !power_counters.empty(); }
};

// main() prints the usage text before the message (see there).
[[noreturn]] void FailUsage(const std::string& message) {
  throw RunnerError(kExitUsage, message);
}

int ParseInt(const std::string& flag, const std::string& text, int min) {
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < min ||
      value > std::numeric_limits<int32_t>::max()) {
    FailUsage(flag + " expects an integer >= " + std::to_string(min) +
              ", got '" + text + "'");
  }
  return static_cast<int>(value);
}

std::vector<int32_t> ParseTokenList(const std::string& flag,
                                    const std::string& text) {
  std::vector<int32_t> tokens;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    tokens.push_back(ParseInt(flag, item, 0));
  }
  if (tokens.empty()) FailUsage(flag + " needs at least one token");
  return tokens;
}

// A usable --weight-cache path: an existing regular file this process can
// open for reading and writing, or a new name in an existing folder it may
// write to. XNNPACK itself only logs a path it cannot open and runs without a
// cache (measuring something other than what was asked for), and aborts the
// process when a write into the cache fails.
void CheckWeightCachePath(const std::string& path) {
  const std::string flag = "--weight-cache '" + path + "'";
  if (path.empty()) FailUsage("--weight-cache needs a file path");
  for (const char c : path) {
    // LiteRT hands the path to its CPU accelerator in an unescaped TOML line.
    if (c == '"' || static_cast<unsigned char>(c) < 0x20) {
      FailUsage(flag + ": the path may hold no '\"' and no control character");
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      FailUsage(flag + " is a folder; give the cache file's path (created "
                "when absent)");
    }
    if (!S_ISREG(st.st_mode)) FailUsage(flag + " is not a regular file");
    // Opened, not access()ed: root passes access() for any file, and a file
    // such as /proc/version then aborts XNNPACK's first write.
    const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      FailUsage(flag + " cannot be read and written: " + std::strerror(errno));
    }
    close(fd);
    return;
  }
  if (errno != ENOENT && errno != ENOTDIR) {
    FailUsage(flag + ": " + std::strerror(errno));
  }
  const size_t slash = path.rfind('/');
  const std::string folder = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : path.substr(0, slash);
  if (stat(folder.c_str(), &st) != 0) {
    FailUsage(flag + ": its folder '" + folder + "' does not exist");
  }
  if (!S_ISDIR(st.st_mode)) {
    FailUsage(flag + ": '" + folder + "' is not a folder");
  }
  if (access(folder.c_str(), W_OK | X_OK) != 0) {
    FailUsage(flag + ": cannot create the file in '" + folder +
              "': " + std::strerror(errno));
  }
}

Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(kExitOk);
    }
    if (flag == "--no-warm-init") {  // the flags without a value
      args.warm_init = false;
      continue;
    }
    if (flag == "--fp16-arithmetic") {
      args.fp16_arithmetic = true;
      continue;
    }
    if (flag == "--profile") {
      args.profile = true;
      continue;
    }
    std::string value;
    const size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      FailUsage("missing value for " + flag);
    }
    if (flag == "--model") {
      args.model = value;
    } else if (flag == "--prefill") {
      args.prefill = ParseInt(flag, value, 1);
    } else if (flag == "--decode") {
      args.decode = ParseInt(flag, value, 1);
    } else if (flag == "--threads") {
      args.threads = ParseInt(flag, value, 1);
    } else if (flag == "--warmup") {
      args.warmup = ParseInt(flag, value, 0);
    } else if (flag == "--reps") {
      args.reps = ParseInt(flag, value, 1);
    } else if (flag == "--api") {
      if (value != "compiled_model" && value != "interpreter") {
        FailUsage("--api must be compiled_model or interpreter, got '" +
                  value + "'");
      }
      if (!LLM_RUNNER_HAS_COMPILED_MODEL && value == "compiled_model") {
        FailUsage("--api compiled_model is not in this build: it links the "
                  "TFLite C API (TensorFlowLiteC), which has no CompiledModel; "
                  "use --api interpreter");
      }
      args.api = value;
    } else if (flag == "--prompt-tokens") {
      args.prompt_tokens = ParseTokenList(flag, value);
    } else if (flag == "--follow-tokens") {
      args.follow_tokens = ParseTokenList(flag, value);
    } else if (flag == "--top-k") {
      args.top_k = ParseInt(flag, value, 0);
    } else if (flag == "--depth") {
      args.depth = ParseInt(flag, value, 0);
    } else if (flag == "--bandwidth-probe-mb") {
      args.bandwidth_probe_mb = ParseInt(flag, value, 0);
    } else if (flag == "--weight-cache") {
      CheckWeightCachePath(value);
      args.weight_cache = value;
    } else if (flag == "--power-file" || flag == "--power-counter") {
      if (value.empty()) FailUsage(flag + " needs a file path");
      (flag == "--power-file" ? args.power_files : args.power_counters).push_back(value);
    } else if (flag == "--power-hz") {
      args.power_hz = ParseInt(flag, value, 1);
      if (args.power_hz > 1000) FailUsage("--power-hz is at most 1000, got " + value);
    } else if (flag == "--power-idle-ms") {
      args.power_idle_ms = ParseInt(flag, value, 0);
    } else if (flag == "--no-warm-init" || flag == "--fp16-arithmetic" ||
               flag == "--profile") {
      FailUsage(flag + " takes no value");
    } else {
      FailUsage("unknown flag '" + flag + "'");
    }
  }
  if (args.model.empty()) FailUsage("--model is required");
  if (!LLM_RUNNER_CAN_FORK && args.bandwidth_probe_mb > 0) {
    FailUsage("--bandwidth-probe-mb " + std::to_string(args.bandwidth_probe_mb) +
              ": the bandwidth probe runs in a forked child and iOS apps "
              "cannot fork; pass --bandwidth-probe-mb 0");
  }
  return args;
}

// Keeps the first message of TFLite's error reporter.
void KeepFirstError(void* user_data, const char* format, va_list args) {
  auto* message = static_cast<std::string*>(user_data);
  if (!message->empty()) return;
  char text[512];
  std::vsnprintf(text, sizeof(text), format, args);
  *message = text;
  while (!message->empty() && message->back() == '\n') message->pop_back();
}

// Rejects a missing, unreadable or corrupt file before the chosen engine
// loads it: LiteRtCreateModelFromFile does not verify the flatbuffer and
// crashes on a truncated file, while TFLite's loader verifies it (and only
// maps the file, so this costs little). Returns the file size.
size_t CheckModelFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) FailModel(path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) FailModel(path, "not a regular file");
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) FailModel(path, std::strerror(errno));
  std::fclose(file);
  std::string error;
  TfLiteModel* model = TfLiteModelCreateFromFileWithErrorReporter(
      path.c_str(), KeepFirstError, &error);
  if (model == nullptr) {
    FailModel(path, error.empty() ? "not a valid TFLite model" : error);
  }
  TfLiteModelDelete(model);
  return static_cast<size_t>(st.st_size);
}

// Token at `position` of the default prompt, a fixed spread over the
// vocabulary; the --depth fill continues it past the prompt.
int32_t DefaultToken(int position, int vocab) {
  return static_cast<int32_t>(
      1 + (static_cast<int64_t>(position) * 7919) % (vocab - 1));
}

// Position of the first generated token: decode step 0 runs one before it.
int DecodeStart(int prefill_len, int depth) {
  return std::max(prefill_len, depth);
}

// Checks the prompt flags against the model, then that the workload fits
// the KV cache; returns the prompt. The flags' own values go first, so a bad
// --prompt-tokens is reported as such and not as a (default) --decode that
// does not fit.
std::vector<int32_t> PromptTokens(const Args& args, const ModelInfo& info) {
  const int p = info.prefill_len;
  if (args.prefill != 0 && args.prefill != p) {
    FailUsage("--prefill " + std::to_string(args.prefill) +
              " does not match the model's prefill length " +
              std::to_string(p));
  }
  std::vector<int32_t> tokens = args.prompt_tokens;
  if (tokens.empty()) {
    tokens.resize(p);
    for (int i = 0; i < p; ++i) tokens[i] = DefaultToken(i, info.vocab);
  } else if (static_cast<int>(tokens.size()) != p) {
    FailUsage("--prompt-tokens has " + std::to_string(tokens.size()) +
              " tokens; the model's prefill length is " + std::to_string(p));
  }
  for (int32_t token : tokens) {
    if (token >= info.vocab) {
      FailUsage("prompt token " + std::to_string(token) +
                " is outside the vocabulary of " + std::to_string(info.vocab));
    }
  }
  for (int32_t token : args.follow_tokens) {
    if (token >= info.vocab) {
      FailUsage("--follow-tokens token " + std::to_string(token) +
                " is outside the vocabulary of " + std::to_string(info.vocab));
    }
  }
  if (!args.follow_tokens.empty() &&
      static_cast<int>(args.follow_tokens.size()) < args.decode - 1) {
    FailUsage("--follow-tokens has " + std::to_string(args.follow_tokens.size()) +
              " tokens; --decode " + std::to_string(args.decode) + " needs " +
              std::to_string(args.decode - 1));
  }
  if (args.top_k > info.vocab) {
    FailUsage("--top-k " + std::to_string(args.top_k) +
              " exceeds the vocabulary of " + std::to_string(info.vocab));
  }
  if (DecodeStart(p, args.depth) + args.decode > info.kv_len) {
    FailUsage((args.depth > p ? "depth " + std::to_string(args.depth)
                              : "prefill " + std::to_string(p)) +
              " + decode " + std::to_string(args.decode) +
              " exceeds the KV cache length " + std::to_string(info.kv_len));
  }
  return tokens;
}

// First index of the maximum, like numpy.argmax.
int32_t Argmax(const float* values, int n) {
  return static_cast<int32_t>(std::max_element(values, values + n) - values);
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

// Untimed: fills KV positions P..depth-1 after the prompt with prefill
// chunks at P, 2P, ...; the last chunk starts at depth-P, so it ends at
// depth-1 exactly and never runs past the cache (where it overlaps the chunk
// before, it recomputes those positions from the same tokens). Returns the
// token at position DecodeStart-1, which decode step 0 feeds.
int32_t FillToDepth(Engine& engine, const std::vector<int32_t>& prompt,
                    int depth) {
  const int p = engine.info().prefill_len;
  const auto token_at = [&](int position) {
    return position < p ? prompt[position]
                        : DefaultToken(position, engine.info().vocab);
  };
  std::vector<int32_t> chunk(p);
  int filled = p;
  while (filled < depth) {
    const int start = std::min(filled, depth - p);
    for (int i = 0; i < p; ++i) chunk[i] = token_at(start + i);
    engine.Prefill(chunk, start);
    filled = start + p;
  }
  return token_at(DecodeStart(p, depth) - 1);
}

// The N highest logits, highest first (ties: lower token id first).
std::vector<TopLogit> TopLogits(const float* values, int n, int k) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [values](int32_t a, int32_t b) {
                      return values[a] > values[b] ||
                             (values[a] == values[b] && a < b);
                    });
  std::vector<TopLogit> top;
  for (int i = 0; i < k; ++i) top.push_back({ids[i], values[ids[i]]});
  return top;
}

// What a repetition records beyond its timings: each step's greedy token
// and, with --top-k, its highest logits.
struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<TopLogit>> top;
  // With record_memory: resident memory after the prefill and at the end of
  // the decode, read outside the clocks.
  std::optional<MemorySplit> after_prefill, after_decode;
};

// One repetition: reset the cache, prefill the prompt, fill to --depth, then
// greedy-decode. Step 0 re-feeds the last filled token (at depth 0, the last
// prompt token at P-1) to get the first logits (prefill returns none), as
// LiteRT-LM does. With --follow-tokens, step i+1 feeds follow[i] instead of
// step i's argmax; the top-k copy happens after the step's clock stops.
// With `profile` (an engine created with EngineOptions::profile), the
// prefill and the last decode step are recorded, the profiler started and
// stopped outside their clocks.
// With `power`, the prefill and the decode are each a window of it (rep
// `rep`), opened and closed outside their clocks.
Sample RunOnce(Engine& engine, const std::vector<int32_t>& prompt,
               const Args& args, Trace* trace, bool record_memory,
               Profile* profile = nullptr, PowerSampler* power = nullptr,
               int rep = -1) {
  const ModelInfo& info = engine.info();
  engine.ResetKvCache();
  *trace = Trace();
  Sample sample;
  if (profile != nullptr) engine.StartProfile();
  const size_t prefill_window = power ? power->Begin("prefill", rep) : 0;
  const Clock::time_point start = Clock::now();
  engine.Prefill(prompt, 0);
  sample.prefill_s = Seconds(start, Clock::now());
  if (power) power->End(prefill_window);
  if (profile != nullptr) {
    profile->prefill = {sample.prefill_s, Attribute(engine.StopProfile())};
  }
  if (record_memory) {
    trace->after_prefill = ReadMemorySplit("prefill", args.model, args.weight_cache);
  }

  int32_t token = FillToDepth(engine, prompt, args.depth);
  int32_t position = DecodeStart(info.prefill_len, args.depth) - 1;
  const size_t decode_window = power ? power->Begin("decode", rep) : 0;
  for (int step = 0; step < args.decode; ++step) {
    const bool profiled = profile != nullptr && step == args.decode - 1;
    if (profiled) engine.StartProfile();
    const Clock::time_point step_start = Clock::now();
    const float* logits = engine.Decode(token, position++);
    token = Argmax(logits, info.vocab);
    const double step_s = Seconds(step_start, Clock::now());
    if (profiled) profile->decode = {step_s, Attribute(engine.StopProfile())};
    if (step == 0) sample.first_step_s = step_s;
    sample.decode_s += step_s;
    trace->tokens.push_back(token);
    if (args.top_k > 0) {
      trace->top.push_back(TopLogits(logits, info.vocab, args.top_k));
    }
    if (!args.follow_tokens.empty() && step + 1 < args.decode) {
      token = args.follow_tokens[step];
    }
  }
  if (power) power->End(decode_window);
  if (record_memory) {
    trace->after_decode = ReadMemorySplit("decode", args.model, args.weight_cache);
  }
  return sample;
}

// The OS's own peak memory figure in KiB (report.h's vmhwm_kb); none where
// unreadable.
#if defined(__APPLE__)
// Darwin has no /proc: the peak of phys_footprint, the figure jetsam kills an
// iOS app by (TASK_VM_INFO's ledger_phys_footprint_peak, revision 3 and later).
std::optional<int64_t> ReadOsPeakKb() {
  task_vm_info_data_t info = {};
  mach_msg_type_number_t count = TASK_VM_INFO_COUNT;
  if (task_info(mach_task_self(), TASK_VM_INFO,
                reinterpret_cast<task_info_t>(&info), &count) != KERN_SUCCESS ||
      count < TASK_VM_INFO_REV3_COUNT || info.ledger_phys_footprint_peak <= 0) {
    return std::nullopt;
  }
  return static_cast<int64_t>(info.ledger_phys_footprint_peak / 1024);
}
#else
// Linux and Android: the peak resident set, VmHWM in /proc/self/status.
std::optional<int64_t> ReadOsPeakKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return std::nullopt;
}
#endif

// getrusage's peak resident set in KiB: ru_maxrss counts bytes on Darwin and
// KiB on Linux and Android.
int64_t MaxRssKb(const struct rusage& usage) {
#if defined(__APPLE__)
  return static_cast<int64_t>(usage.ru_maxrss) / 1024;
#else
  return static_cast<int64_t>(usage.ru_maxrss);
#endif
}

// Whether this CPU computes in fp16 natively: XNNPACK's FORCE_FP16 is for
// such CPUs, and the runner asks for it nowhere else. (On this harness's
// exports it fails anyway, on any CPU: harness/measure/bench.py,
// Workload.fp16_arithmetic.)
#if defined(__APPLE__) && defined(__aarch64__)
bool CpuHasFp16Arithmetic() {
  // FEAT_FP16 since iOS 15 / macOS 12, neon_fp16 before.
  for (const char* name : {"hw.optional.arm.FEAT_FP16", "hw.optional.neon_fp16"}) {
    int value = 0;
    size_t size = sizeof(value);
    if (sysctlbyname(name, &value, &size, nullptr, 0) == 0) return value != 0;
  }
  return false;
}
#elif defined(__aarch64__)
// Linux and Android: HWCAP_ASIMDHP (asm/hwcap.h), ARMv8.2's half-precision
// vector arithmetic.
bool CpuHasFp16Arithmetic() { return (getauxval(AT_HWCAP) & (1UL << 10)) != 0; }
#elif defined(__x86_64__)
// AVX512-FP16 (CPUID.(EAX=7,ECX=0):EDX[23]), usable only where the OS saves
// the AVX-512 registers (OSXSAVE, then XCR0's opmask, ZMM and SSE/AVX bits).
bool CpuHasFp16Arithmetic() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 23))) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  return (xcr0 & 0xe6) == 0xe6;
}
#else
bool CpuHasFp16Arithmetic() { return false; }
#endif

EngineOptions EngineOptionsFor(const Args& args) {
  EngineOptions options;
  options.threads = args.threads;
  options.weight_cache = args.weight_cache;
  options.fp16_arithmetic = args.fp16_arithmetic && CpuHasFp16Arithmetic();
  return options;
}

// Model load + compile + buffer setup; returns the engine and its seconds.
std::unique_ptr<Engine> InitEngine(const Args& args,
                                   const EngineOptions& options,
                                   double* seconds) {
  const Clock::time_point start = Clock::now();
  std::unique_ptr<Engine> engine =
      args.api == "interpreter" ? CreateInterpreterEngine(args.model, options)
                                : CreateCompiledModelEngine(args.model, options);
  *seconds = Seconds(start, Clock::now());
  return engine;
}

// Which file is at a path and when it was last written: a load that rewrote
// the weight cache changes its mtime (and usually its size), one that read
// it changes nothing.
struct FileStamp {
  bool exists = false;
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;

  bool operator==(const FileStamp& o) const {
    return exists == o.exists && device == o.device && inode == o.inode &&
           size == o.size && mtime_ns == o.mtime_ns;
  }
};

FileStamp StampOf(const std::string& path) {
  FileStamp stamp;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return stamp;
#if defined(__APPLE__)
  const struct timespec& mtime = st.st_mtimespec;
#else
  const struct timespec& mtime = st.st_mtim;
#endif
  stamp.exists = true;
  stamp.device = st.st_dev;
  stamp.inode = st.st_ino;
  stamp.size = st.st_size;
  stamp.mtime_ns = static_cast<int64_t>(mtime.tv_sec) * 1000000000 + mtime.tv_nsec;
  return stamp;
}

// XNNPACK's cache file header (tflite/delegates/xnnpack/weight_cache.h,
// XNNPackCacheHeader), read only to tell what a load did: version 0 until
// the build writes the header last, the buffer list that ends the file, and
// a stale flag. (XNNPACK sets that flag only through a file descriptor it
// holds, i.e. never for a cache it loaded by path: a loaded cache that lacks
// some of the model's weights is used as it is, the missing ones packed in
// memory, and nothing on disk shows it.)
struct CacheHeader {
  uint64_t version = 0;
  uint64_t buffer_list_offset = 0;
  uint64_t buffer_list_size = 0;
  uint8_t stale = 0;
};

std::optional<CacheHeader> ReadCacheHeader(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return std::nullopt;
  unsigned char bytes[25];
  const bool read = std::fread(bytes, 1, sizeof(bytes), file) == sizeof(bytes);
  std::fclose(file);
  if (!read) return std::nullopt;
  CacheHeader header;
  std::memcpy(&header.version, bytes, 8);
  std::memcpy(&header.buffer_list_offset, bytes + 8, 8);
  std::memcpy(&header.buffer_list_size, bytes + 16, 8);
  header.stale = bytes[24];
  return header;
}

// A cache XNNPACK finished writing and would load (its own check also
// verifies the buffer list and the kernels' fingerprints).
bool CacheFinished(const std::string& path, const FileStamp& stamp) {
  const std::optional<CacheHeader> header = ReadCacheHeader(path);
  return header && header->version != 0 && header->stale == 0 &&
         header->buffer_list_offset + header->buffer_list_size ==
             static_cast<uint64_t>(stamp.size);
}

// What the first load did with the weight cache, from the file before and
// after it: "warm" when it read a cache and left it as it was, "cold" when
// it packed the weights and wrote one. XNNPACK rebuilds a file it cannot use
// (unfinished, stale, another XNNPACK's or CPU's kernels) rather than fail,
// and only logs a file it cannot write and runs without a cache: the first
// is reported as cold, the second fails the run.
std::string WeightCacheState(const std::string& path, const FileStamp& before) {
  const FileStamp after = StampOf(path);
  if (after.exists && before.exists && after == before) {
    // A file XNNPACK could neither use nor rewrite would also be unchanged.
    if (!CacheFinished(path, after)) {
      FailRuntime("XNNPACK could not use or rewrite the weight cache '" + path +
                  "' (its log above says why)");
    }
    return "warm";
  }
  if (!after.exists || !CacheFinished(path, after)) {
    FailRuntime("XNNPACK did not write a weight cache to '" + path +
                "' (its log above says why; a full disk?)");
  }
  if (before.exists) {
    std::fprintf(stderr,
                 "note: the weight cache '%s' was not usable (unfinished, "
                 "stale or built by other kernels); XNNPACK rebuilt it\n",
                 path.c_str());
  }
  return "cold";
}

// --profile's repetition, after the measured ones: on an engine of its own,
// created with the profiler attached (the measured engine never has one,
// since XNNPACK times its operators on every invoke of an engine it was
// prepared for with a profiler). One unprofiled repetition goes first, as
// --warmup's do for the measured engine: the first invoke of a new engine
// does one-off work (XNNPACK's setup, first touches of the arena) that is
// not where a repetition's time goes.
Profile ProfileRepetition(const Args& args, EngineOptions options,
                          const std::vector<int32_t>& prompt) {
  options.profile = true;
  double init_s = 0;
  const std::unique_ptr<Engine> engine = InitEngine(args, options, &init_s);
  Trace trace;
  RunOnce(*engine, prompt, args, &trace, false);
  Profile profile;
  profile.profiler = engine->profiler_name();
  RunOnce(*engine, prompt, args, &trace, false, &profile);
  return profile;
}

// The report's fields that the flags decide, before anything is measured.
RunnerReport NewReport(const Args& args) {
  RunnerReport report;
  report.runner = "llm_runner";
  report.runner_version = kVersion;
  report.api = args.api;
  report.runtime = "LiteRT";
  report.runtime_version = TfLiteVersion();
  report.model = args.model;
  report.threads = args.threads;
  report.decode_len = args.decode;
  report.depth = args.depth;
  report.warmup = args.warmup;
  // Both engines run on XNNPACK: the interpreter through its delegate,
  // CompiledModel through its CPU accelerator.
  report.xnnpack = true;
  return report;
}

void SetModelInfo(const ModelInfo& info, RunnerReport* report) {
  report->prefill_len = info.prefill_len;
  report->kv_len = info.kv_len;
  report->vocab = info.vocab;
  report->num_layers = info.num_layers;
  report->kv_cache_bytes = static_cast<int64_t>(info.kv_cache_bytes);
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  RunnerReport report = NewReport(args);
  report.model_bytes = static_cast<int64_t>(CheckModelFile(args.model));

  // Before the runtime exists: the probe forks, and this process has no
  // other threads yet.
  if (args.bandwidth_probe_mb > 0) {
    report.bandwidth = ProbeReadBandwidth(
        static_cast<size_t>(args.bandwidth_probe_mb) << 20, args.threads,
        kProbePasses);
  }

  const EngineOptions options = EngineOptionsFor(args);
  report.fp16_arithmetic = options.fp16_arithmetic;
  const bool cached = !args.weight_cache.empty();
  const FileStamp cache_before = cached ? StampOf(args.weight_cache) : FileStamp();

  // Cold init: the first load in this process. With a weight cache it is
  // also the load that finds the cache there or not (report.h).
  std::unique_ptr<Engine> engine = InitEngine(args, options, &report.init_s);
  if (cached) report.weight_cache = WeightCacheState(args.weight_cache, cache_before);
  const std::vector<int32_t> prompt = PromptTokens(args, engine->info());
  // Warm init: the file is in the page cache and the allocator and runtime
  // are warm, as for an app that reloads its model; with a weight cache, it
  // reads the cache the first load found or wrote. The first instance goes
  // before the second is built, or both would be resident at once.
  if (args.warm_init) {
    engine.reset();
    double init_warm_s = 0;
    engine = InitEngine(args, options, &init_warm_s);
    report.init_warm_s = init_warm_s;
  }
  SetModelInfo(engine->info(), &report);
  if (auto loaded = ReadMemorySplit("load", args.model, args.weight_cache)) {
    report.memory.push_back(*loaded);
  }

  Trace trace;
  const int runs = args.warmup + args.reps;
  std::optional<PowerSampler> power;
  for (int rep = 0; rep < runs; ++rep) {
    if (rep == args.warmup && args.power()) {
      // The baseline: the model loaded and warm, nothing running.
      power.emplace(args.power_files, args.power_counters, args.power_hz);
      power->Start();
      const size_t idle = power->Begin("idle", -1);
      std::this_thread::sleep_for(std::chrono::milliseconds(args.power_idle_ms));
      power->End(idle);
    }
    // Memory on the last repetition only: reading smaps walks every mapping.
    PowerSampler* windows = power ? &*power : nullptr;
    const Sample sample = RunOnce(*engine, prompt, args, &trace, rep == runs - 1,
                                  nullptr, windows, rep - args.warmup);
    if (rep >= args.warmup) report.samples.push_back(sample);
  }
  if (power) report.power = power->Finish();
  report.tokens = trace.tokens;
  report.top_logits = trace.top;
  for (const auto& split : {trace.after_prefill, trace.after_decode}) {
    if (split) report.memory.push_back(*split);
  }

  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  report.peak_rss_kb = MaxRssKb(usage);
  report.vmhwm_kb = ReadOsPeakKb();
  // After the peak memory is read and the engine is gone: loading the model
  // a second time for the count is not part of the benchmark, and doing it
  // before the cold init would warm that init.
  engine.reset();
  if (cached) {
    report.weight_cache_bytes = static_cast<int64_t>(StampOf(args.weight_cache).size);
  }
  // After the peak memory too: the profiled engine is not what was measured.
  if (args.profile) report.profile = ProfileRepetition(args, options, prompt);
  const size_t weight_bytes = CountWeightBytes(args.model);
  if (weight_bytes > 0) report.weight_bytes = static_cast<int64_t>(weight_bytes);

  std::fputs(ToJson(report).c_str(), stdout);
  std::fputc('\n', stdout);
  return kExitOk;
}

}  // namespace
}  // namespace llm_runner

namespace llm_runner {

int RunMain(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const RunnerError& e) {
    // The usage text goes first and the error line last: the harness, like
    // a reader of a terminal, takes stderr's last line as the reason.
    if (e.code() == kExitUsage) {
      std::fputs(kUsage, stderr);
    }
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitRuntime;
  }
}

}  // namespace llm_runner
