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

#include "engine.h"
#include "json_writer.h"
#include "litert_c_api.h"

namespace llm_runner {
namespace {

constexpr char kVersion[] = "0.1.0";

constexpr char kUsage[] =
    "usage: llm_runner --model PATH [--prefill N] [--decode N] [--threads N]\n"
    "                  [--warmup N] [--reps N] [--api compiled_model|interpreter]\n"
    "                  [--prompt-tokens T1,T2,...]\n"
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

std::vector<int32_t> PromptTokens(const Args& args, const ModelInfo& info) {
  const int p = info.prefill_len;
  if (args.prefill != 0 && args.prefill != p) {
    FailUsage("--prefill " + std::to_string(args.prefill) +
              " does not match the model's prefill length " +
              std::to_string(p));
  }
  if (p + args.decode > info.kv_len) {
    FailUsage("prefill " + std::to_string(p) + " + decode " +
              std::to_string(args.decode) + " exceeds the KV cache length " +
              std::to_string(info.kv_len));
  }
  if (args.prompt_tokens.empty()) {
    std::vector<int32_t> tokens(p);
    for (int i = 0; i < p; ++i) {
      tokens[i] = static_cast<int32_t>(
          1 + (static_cast<int64_t>(i) * 7919) % (info.vocab - 1));
    }
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

// One repetition: reset the cache, prefill the prompt, then greedy-decode.
// Step 0 re-feeds the last prompt token at position P-1 to get the first
// logits (prefill returns none), as LiteRT-LM does.
Sample RunOnce(Engine& engine, const std::vector<int32_t>& prompt,
               int decode_len, std::vector<int32_t>* generated) {
  const ModelInfo& info = engine.info();
  engine.ResetKvCache();
  generated->clear();
  Sample sample;
  const Clock::time_point start = Clock::now();
  engine.Prefill(prompt);
  sample.prefill_s = Seconds(start, Clock::now());

  int32_t token = prompt.back();
  int32_t position = info.prefill_len - 1;
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

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  const size_t model_bytes = CheckModelFile(args.model);

  const Clock::time_point init_start = Clock::now();
  std::unique_ptr<Engine> engine =
      args.api == "interpreter"
          ? CreateInterpreterEngine(args.model, args.threads)
          : CreateCompiledModelEngine(args.model, args.threads);
  const double init_s = Seconds(init_start, Clock::now());
  const ModelInfo& info = engine->info();
  const std::vector<int32_t> prompt = PromptTokens(args, info);

  std::vector<Sample> samples;
  std::vector<int32_t> generated;
  for (int rep = 0; rep < args.warmup + args.reps; ++rep) {
    const Sample sample = RunOnce(*engine, prompt, args.decode, &generated);
    if (rep >= args.warmup) samples.push_back(sample);
  }

  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  const long vmhwm_kb = ReadVmHwmKb();

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
  json.Field("kv_len", info.kv_len);
  json.Field("vocab", info.vocab);
  json.Field("num_layers", info.num_layers);
  json.Field("warmup", args.warmup);
  json.Field("init_ms", init_s * 1000.0);
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
