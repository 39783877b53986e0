// llm_runner: llama-bench style prefill/decode benchmark of a litert-torch
// LLM export (.tflite with `prefill` and `decode` signatures) on LiteRT.
// Prints exactly one JSON document on stdout; logs go to stderr.
//
// Exit codes: 0 ok, 2 usage error, 3 model file missing/unreadable/corrupt,
// 4 runtime failure.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bandwidth_probe.h"
#include "engine.h"
#include "json_writer.h"
#include "litert_c_api.h"

namespace llm_runner {
namespace {

constexpr char kVersion[] = "0.1.0";
constexpr int kProbePasses = 5;

constexpr char kUsage[] =
    "usage: llm_runner --model PATH [--prefill N] [--decode N] [--threads N]\n"
    "                  [--warmup N] [--reps N] [--api compiled_model|interpreter]\n"
    "                  [--prompt-tokens T1,T2,...] [--depth N]\n"
    "                  [--bandwidth-probe-mb N] [--no-warm-init]\n"
    "  --model PATH          .tflite with 'prefill' and 'decode' signatures\n"
    "  --prefill N           prompt length; must equal the prefill signature's\n"
    "                        length (default: that length)\n"
    "  --decode N            tokens generated per repetition (default 32)\n"
    "  --threads N           CPU threads (default 4)\n"
    "  --warmup N            repetitions run first and discarded (default 1)\n"
    "  --reps N              measured repetitions (default 5)\n"
    "  --api NAME            compiled_model (default) or interpreter\n"
    "  --prompt-tokens LIST  comma-separated prompt token ids (default:\n"
    "                        1 + (i * 7919) % (vocab - 1))\n"
    "  --depth N             fill the KV cache up to position N (untimed prefill\n"
    "                        chunks, tokens by the default formula) so the timed\n"
    "                        decode starts at position max(P, N) (default 0)\n"
    "  --bandwidth-probe-mb N  measure streaming-read memory bandwidth over N MiB\n"
    "                        on --threads threads before loading the model\n"
    "                        (default 256; 0: no probe)\n"
    "  --no-warm-init        load the model once; by default it is loaded, torn\n"
    "                        down and loaded again (init_warm_ms), and the\n"
    "                        second instance is benchmarked\n"
    "  --help                print this help\n";

struct Args {
  std::string model;
  int prefill = 0;  // 0: the model's prefill length
  int decode = 32;
  int threads = 4;
  int warmup = 1;
  int reps = 5;
  std::string api = "compiled_model";
  std::vector<int32_t> prompt_tokens;
  int depth = 0;
  int bandwidth_probe_mb = 256;
  bool warm_init = true;
};

[[noreturn]] void FailUsage(const std::string& message) {
  throw RunnerError(kExitUsage, message + "\n" + kUsage);
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

std::vector<int32_t> ParseTokenList(const std::string& text) {
  std::vector<int32_t> tokens;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    tokens.push_back(ParseInt("--prompt-tokens", item, 0));
  }
  if (tokens.empty()) FailUsage("--prompt-tokens needs at least one token");
  return tokens;
}

Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(kExitOk);
    }
    if (flag == "--no-warm-init") {  // the one flag without a value
      args.warm_init = false;
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
      args.api = value;
    } else if (flag == "--prompt-tokens") {
      args.prompt_tokens = ParseTokenList(value);
    } else if (flag == "--depth") {
      args.depth = ParseInt(flag, value, 0);
    } else if (flag == "--bandwidth-probe-mb") {
      args.bandwidth_probe_mb = ParseInt(flag, value, 0);
    } else if (flag == "--no-warm-init") {
      FailUsage("--no-warm-init takes no value");
    } else {
      FailUsage("unknown flag '" + flag + "'");
    }
  }
  if (args.model.empty()) FailUsage("--model is required");
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

// Checks that the workload fits the model; returns the prompt.
std::vector<int32_t> PromptTokens(const Args& args, const ModelInfo& info) {
  const int p = info.prefill_len;
  if (args.prefill != 0 && args.prefill != p) {
    FailUsage("--prefill " + std::to_string(args.prefill) +
              " does not match the model's prefill length " +
              std::to_string(p));
  }
  if (DecodeStart(p, args.depth) + args.decode > info.kv_len) {
    FailUsage((args.depth > p ? "depth " + std::to_string(args.depth)
                              : "prefill " + std::to_string(p)) +
              " + decode " + std::to_string(args.decode) +
              " exceeds the KV cache length " + std::to_string(info.kv_len));
  }
  if (args.prompt_tokens.empty()) {
    std::vector<int32_t> tokens(p);
    for (int i = 0; i < p; ++i) tokens[i] = DefaultToken(i, info.vocab);
    return tokens;
  }
  if (static_cast<int>(args.prompt_tokens.size()) != p) {
    FailUsage("--prompt-tokens has " +
              std::to_string(args.prompt_tokens.size()) +
              " tokens; the model's prefill length is " + std::to_string(p));
  }
  for (int32_t token : args.prompt_tokens) {
    if (token >= info.vocab) {
      FailUsage("prompt token " + std::to_string(token) +
                " is outside the vocabulary of " + std::to_string(info.vocab));
    }
  }
  return args.prompt_tokens;
}

// First index of the maximum, like numpy.argmax.
int32_t Argmax(const float* values, int n) {
  return static_cast<int32_t>(std::max_element(values, values + n) - values);
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

struct Sample {
  double prefill_s = 0;
  double decode_s = 0;
  double first_step_s = 0;
};

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

// One repetition: reset the cache, prefill the prompt, fill to --depth, then
// greedy-decode. Step 0 re-feeds the last filled token (at depth 0, the last
// prompt token at P-1) to get the first logits (prefill returns none), as
// LiteRT-LM does.
Sample RunOnce(Engine& engine, const std::vector<int32_t>& prompt, int depth,
               int decode_len, std::vector<int32_t>* generated) {
  const ModelInfo& info = engine.info();
  engine.ResetKvCache();
  generated->clear();
  Sample sample;
  const Clock::time_point start = Clock::now();
  engine.Prefill(prompt, 0);
  sample.prefill_s = Seconds(start, Clock::now());

  int32_t token = FillToDepth(engine, prompt, depth);
  int32_t position = DecodeStart(info.prefill_len, depth) - 1;
  for (int step = 0; step < decode_len; ++step) {
    const Clock::time_point step_start = Clock::now();
    token = Argmax(engine.Decode(token, position++), info.vocab);
    const double step_s = Seconds(step_start, Clock::now());
    if (step == 0) sample.first_step_s = step_s;
    sample.decode_s += step_s;
    generated->push_back(token);
  }
  return sample;
}

// Peak resident set in KiB from /proc/self/status, or -1 where unreadable.
long ReadVmHwmKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// Model load + compile + buffer setup; returns the engine and its seconds.
std::unique_ptr<Engine> InitEngine(const Args& args, double* seconds) {
  const Clock::time_point start = Clock::now();
  std::unique_ptr<Engine> engine =
      args.api == "interpreter"
          ? CreateInterpreterEngine(args.model, args.threads)
          : CreateCompiledModelEngine(args.model, args.threads);
  *seconds = Seconds(start, Clock::now());
  return engine;
}

void WriteBandwidth(JsonWriter& json, const Bandwidth& bandwidth) {
  json.BeginObject("bandwidth");
  json.Field("read_gb_s", bandwidth.Best());
  json.Field("median_gb_s", bandwidth.Median());
  json.Field("probe_bytes", static_cast<long long>(bandwidth.probe_bytes));
  json.Field("threads", bandwidth.threads);
  json.Field("passes", bandwidth.passes_gb_s);
  json.EndObject();
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  const size_t model_bytes = CheckModelFile(args.model);

  // Before the runtime exists: the probe forks, and this process has no
  // other threads yet.
  Bandwidth bandwidth;
  if (args.bandwidth_probe_mb > 0) {
    bandwidth = ProbeReadBandwidth(
        static_cast<size_t>(args.bandwidth_probe_mb) << 20, args.threads,
        kProbePasses);
  }

  // Cold init: the first load in this process.
  double init_s = 0;
  std::unique_ptr<Engine> engine = InitEngine(args, &init_s);
  const std::vector<int32_t> prompt = PromptTokens(args, engine->info());
  // Warm init: the file is in the page cache and the allocator and runtime
  // are warm, as for an app that reloads its model. The first instance goes
  // before the second is built, or both would be resident at once.
  double init_warm_s = NAN;
  if (args.warm_init) {
    engine.reset();
    engine = InitEngine(args, &init_warm_s);
  }
  const ModelInfo info = engine->info();

  std::vector<Sample> samples;
  std::vector<int32_t> generated;
  for (int rep = 0; rep < args.warmup + args.reps; ++rep) {
    const Sample sample =
        RunOnce(*engine, prompt, args.depth, args.decode, &generated);
    if (rep >= args.warmup) samples.push_back(sample);
  }

  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  const long vmhwm_kb = ReadVmHwmKb();
  // After the peak memory is read and the engine is gone: loading the model
  // a second time for the count is not part of the benchmark, and doing it
  // before the cold init would warm that init.
  engine.reset();
  const size_t weight_bytes = CountWeightBytes(args.model);

  JsonWriter json;
  json.Field("runner", "llm_runner");
  json.Field("runner_version", kVersion);
  json.Field("api", args.api);
  json.Field("runtime", "LiteRT");
  json.Field("runtime_version", TfLiteVersion());
  json.Field("model", args.model);
  json.Field("model_bytes", static_cast<long long>(model_bytes));
  json.Field("threads", args.threads);
  json.Field("prefill_len", info.prefill_len);
  json.Field("decode_len", args.decode);
  json.Field("depth", args.depth);
  json.Field("kv_len", info.kv_len);
  json.Field("vocab", info.vocab);
  json.Field("num_layers", info.num_layers);
  json.Field("kv_cache_bytes", static_cast<long long>(info.kv_cache_bytes));
  if (weight_bytes > 0) {
    json.Field("weight_bytes", static_cast<long long>(weight_bytes));
  } else {
    json.NullField("weight_bytes");
  }
  json.Field("warmup", args.warmup);
  json.Field("init_ms", init_s * 1000.0);
  json.Field("init_warm_ms", init_warm_s * 1000.0);  // NaN: null
  json.BeginArray("samples");
  for (const Sample& s : samples) {
    json.BeginObject();
    json.Field("prefill_s", s.prefill_s);
    json.Field("prefill_tok_s", info.prefill_len / s.prefill_s);
    json.Field("decode_s", s.decode_s);
    json.Field("decode_tok_s", args.decode / s.decode_s);
    json.Field("ttft_ms", (s.prefill_s + s.first_step_s) * 1000.0);
    json.EndObject();
  }
  json.EndArray();
  json.Field("tokens", std::vector<long long>(generated.begin(), generated.end()));
  json.Field("peak_rss_kb", static_cast<long long>(usage.ru_maxrss));
  if (vmhwm_kb >= 0) {
    json.Field("vmhwm_kb", static_cast<long long>(vmhwm_kb));
  } else {
    json.NullField("vmhwm_kb");
  }
  if (args.bandwidth_probe_mb > 0) {
    WriteBandwidth(json, bandwidth);
  } else {
    json.NullField("bandwidth");
  }
  json.Field("xnnpack", true);
  std::fputs(json.Finish().c_str(), stdout);
  std::fputc('\n', stdout);
  return kExitOk;
}

}  // namespace
}  // namespace llm_runner

int main(int argc, char** argv) {
  try {
    return llm_runner::Main(argc, argv);
  } catch (const llm_runner::RunnerError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return llm_runner::kExitRuntime;
  }
}
