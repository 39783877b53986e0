#include "report.h"

#include "json_writer.h"

namespace llm_runner {
namespace {

// int64_t is long on LP64 and long long elsewhere; JsonWriter takes the
// latter, and a long would be ambiguous among its overloads.
void Int(JsonWriter& json, const char* key, int64_t value) {
  json.Field(key, static_cast<long long>(value));
}

void IntOrNull(JsonWriter& json, const char* key,
               const std::optional<int64_t>& value) {
  if (value) {
    Int(json, key, *value);
  } else {
    json.NullField(key);
  }
}

void WriteSample(JsonWriter& json, const RunnerReport& report,
                 const Sample& s) {
  json.BeginObject();
  json.Field("prefill_s", s.prefill_s);
  json.Field("prefill_tok_s", report.prefill_len / s.prefill_s);
  json.Field("decode_s", s.decode_s);
  json.Field("decode_tok_s", report.decode_len / s.decode_s);
  // Time to first token: the prompt's prefill, then the decode step that
  // produces the first token (prefill itself returns no logits).
  json.Field("ttft_ms", (s.prefill_s + s.first_step_s) * 1000.0);
  json.EndObject();
}

void WriteBandwidth(JsonWriter& json, const Bandwidth& bandwidth) {
  json.BeginObject("bandwidth");
  json.Field("read_gb_s", bandwidth.Best());
  json.Field("median_gb_s", bandwidth.Median());
  Int(json, "probe_bytes", static_cast<int64_t>(bandwidth.probe_bytes));
  json.Field("threads", bandwidth.threads);
  json.Field("passes", bandwidth.passes_gb_s);
  json.EndObject();
}

// Each step as {"ids": [...], "logits": [...]}: two flat arrays read more
// easily than pairs, and the writer has no nested arrays.
void WriteTopLogits(JsonWriter& json,
                    const std::vector<std::vector<TopLogit>>& steps) {
  json.BeginArray("top_logits");
  for (const std::vector<TopLogit>& step : steps) {
    std::vector<long long> ids;
    std::vector<double> logits;
    for (const TopLogit& t : step) {
      ids.push_back(t.id);
      logits.push_back(t.logit);
    }
    json.BeginObject();
    json.Field("ids", ids);
    json.Field("logits", logits);
    json.EndObject();
  }
  json.EndArray();
}

// An index, or null where it does not apply (-1).
void IndexOrNull(JsonWriter& json, const char* key, int64_t value) {
  IntOrNull(json, key, value < 0 ? std::nullopt : std::optional<int64_t>(value));
}

const char* KindName(ProfileEvent::Kind kind) {
  switch (kind) {
    case ProfileEvent::kNode: return "op";
    case ProfileEvent::kDelegateNode: return "delegate_kernel";
    case ProfileEvent::kDelegateOp: return "delegate_op";
    case ProfileEvent::kRuntime: return "runtime";
  }
  return "";
}

// {"wall_us": W, "ops": [{"name", "kind", "node", "subgraph", "kernel",
// "op", "us", "delegate"}, ...]} (profiler.h, OpTime).
void WritePhase(JsonWriter& json, const char* key, const PhaseProfile& phase) {
  json.BeginObject(key);
  json.Field("wall_us", phase.wall_s * 1e6);
  json.BeginArray("ops");
  for (const OpTime& op : phase.ops) {
    json.BeginObject();
    json.Field("name", op.name);
    json.Field("kind", KindName(op.kind));
    IndexOrNull(json, "node", op.node);
    IndexOrNull(json, "subgraph", op.subgraph);
    IndexOrNull(json, "kernel", op.kernel);
    IndexOrNull(json, "op", op.op);
    json.Field("us", op.us);
    json.Field("delegate", op.delegate());
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
}

void WriteProfile(JsonWriter& json, const std::optional<Profile>& profile) {
  if (!profile) {
    json.NullField("profile");
    return;
  }
  json.BeginObject("profile");
  json.Field("profiler", profile->profiler);
  WritePhase(json, "prefill", profile->prefill);
  WritePhase(json, "decode", profile->decode);
  json.EndObject();
}

void WritePower(JsonWriter& json, const std::optional<PowerTrace>& power) {
  if (!power) {
    json.NullField("power");
    return;
  }
  json.BeginObject("power");
  json.Field("hz", power->hz);
  json.Field("files", power->files);
  json.Field("counters", power->counters);
  // [t_ns, value, ...] per tick: compact, since a long decode holds thousands.
  json.BeginArray("samples");
  for (const PowerSample& s : power->samples) {
    json.BeginArray();
    json.Element(static_cast<long long>(s.t_ns));
    for (const auto& v : s.values) {
      if (v) {
        json.Element(static_cast<long long>(*v));
      } else {
        json.NullElement();
      }
    }
    json.EndArray();
  }
  json.EndArray();
  json.BeginArray("windows");
  for (const PowerWindow& w : power->windows) {
    json.BeginObject();
    json.Field("phase", w.phase);
    json.Field("rep", w.rep);
    json.Field("start_ns", static_cast<long long>(w.start_ns));
    json.Field("end_ns", static_cast<long long>(w.end_ns));
    json.Field("start_text", w.start_text);
    json.Field("end_text", w.end_text);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
}

}  // namespace

std::string ToJson(const RunnerReport& report) {
  JsonWriter json;
  json.Field("runner", report.runner);
  json.Field("runner_version", report.runner_version);
  json.Field("api", report.api);
  json.Field("runtime", report.runtime);
  json.Field("runtime_version", report.runtime_version);
  json.Field("model", report.model);
  Int(json, "model_bytes", report.model_bytes);
  json.Field("threads", report.threads);
  json.Field("prefill_len", report.prefill_len);
  json.Field("decode_len", report.decode_len);
  json.Field("depth", report.depth);
  json.Field("kv_len", report.kv_len);
  json.Field("vocab", report.vocab);
  json.Field("num_layers", report.num_layers);
  Int(json, "kv_cache_bytes", report.kv_cache_bytes);
  IntOrNull(json, "weight_bytes", report.weight_bytes);
  json.Field("warmup", report.warmup);
  json.Field("init_ms", report.init_s * 1000.0);
  if (report.init_warm_s) {
    json.Field("init_warm_ms", *report.init_warm_s * 1000.0);
  } else {
    json.NullField("init_warm_ms");
  }
  json.BeginArray("samples");
  for (const Sample& s : report.samples) WriteSample(json, report, s);
  json.EndArray();
  json.Field("tokens",
             std::vector<long long>(report.tokens.begin(), report.tokens.end()));
  WriteTopLogits(json, report.top_logits);
  Int(json, "peak_rss_kb", report.peak_rss_kb);
  IntOrNull(json, "vmhwm_kb", report.vmhwm_kb);
  if (report.bandwidth) {
    WriteBandwidth(json, *report.bandwidth);
  } else {
    json.NullField("bandwidth");
  }
  json.Field("xnnpack", report.xnnpack);
  json.Field("fp16_arithmetic", report.fp16_arithmetic);
  json.Field("weight_cache", report.weight_cache);
  IntOrNull(json, "weight_cache_bytes", report.weight_cache_bytes);
  json.BeginArray("memory");
  for (const MemorySplit& m : report.memory) {
    json.BeginObject();
    json.Field("phase", m.phase);
    Int(json, "rss_kb", m.rss_kb);
    Int(json, "pss_kb", m.pss_kb);
    Int(json, "anonymous_kb", m.anonymous_kb);
    Int(json, "model_file_kb", m.model_file_kb);
    Int(json, "weight_cache_kb", m.weight_cache_kb);
    Int(json, "other_file_kb", m.other_file_kb);
    Int(json, "private_dirty_kb", m.private_dirty_kb);
    Int(json, "swap_kb", m.swap_kb);
    json.EndObject();
  }
  json.EndArray();
  WriteProfile(json, report.profile);
  WritePower(json, report.power);
  return json.Finish();
}

}  // namespace llm_runner
