#include "profiler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "litert_c_api.h"

namespace llm_runner {

const char kXnnpackKernelName[] = "TfLiteXNNPackDelegate";

namespace {

// Whether `inner` runs inside `outer`: it starts before `outer` ends and ends
// no later, give or take `slack_us` (LiteRT's whole-microsecond clock).
bool NestedIn(const ProfileEvent& inner, const ProfileEvent& outer,
              double slack_us) {
  return inner.start_us < outer.start_us + outer.us &&
         inner.start_us + inner.us <= outer.start_us + outer.us + slack_us;
}

// [first, last] positions of each delegate kernel's operators: a run of
// kDelegateOp events whose places in the kernel go up (the next kernel's
// start again at 0).
std::vector<std::pair<size_t, size_t>> KernelRuns(
    const std::vector<ProfileEvent>& events) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind != ProfileEvent::kDelegateOp) continue;
    const bool continues = i > 0 && !runs.empty() && runs.back().second == i - 1 &&
                           events[i].index > events[i - 1].index;
    if (continues) {
      runs.back().second = i;
    } else {
      runs.emplace_back(i, i);
    }
  }
  return runs;
}

// `events` with each kernel's inferred kDelegateNode (spans[k]: its start
// and length) placed before its operators.
std::vector<ProfileEvent> WithKernelNodes(
    std::vector<ProfileEvent> events,
    const std::vector<std::pair<size_t, size_t>>& runs,
    const std::vector<std::pair<double, double>>& spans) {
  std::vector<ProfileEvent> out;
  out.reserve(events.size() + runs.size());
  size_t k = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (k < runs.size() && runs[k].first == i) {
      ProfileEvent kernel;
      kernel.kind = ProfileEvent::kDelegateNode;
      kernel.name = kXnnpackKernelName;
      kernel.index = static_cast<int64_t>(k);
      kernel.subgraph = events[i].subgraph;
      kernel.start_us = spans[k].first;
      kernel.us = spans[k].second;
      out.push_back(std::move(kernel));
      ++k;
    }
    if (events[i].kind == ProfileEvent::kDelegateOp) events[i].start_us = 0;
    out.push_back(std::move(events[i]));
  }
  return out;
}

// LLM_RUNNER_PROFILE_DUMP=1 prints every event on stderr as Attribute gets
// it: for looking at what the runtime reported, not for the harness.
void MaybeDump(const std::vector<ProfileEvent>& events) {
  static const bool dump = std::getenv("LLM_RUNNER_PROFILE_DUMP") != nullptr;
  if (!dump) return;
  static const char* const kKinds[] = {"node", "kernel", "delegate_op", "runtime"};
  for (const ProfileEvent& e : events) {
    std::fprintf(stderr, "profile-event %s sg=%lld idx=%lld start=%.1f us=%.2f %s\n",
                 kKinds[e.kind], static_cast<long long>(e.subgraph),
                 static_cast<long long>(e.index), e.start_us, e.us,
                 e.name.c_str());
  }
}

}  // namespace

std::vector<OpTime> Attribute(const std::vector<ProfileEvent>& events) {
  MaybeDump(events);
  constexpr double kSlackUs = 1.0;
  // Each span's own time: its length less the spans nested in it, found
  // with a stack of the open ones (events come in the order they began).
  std::vector<double> own(events.size(), 0.0);
  std::vector<size_t> open;
  size_t kernel = events.size();  // the kernel node the next operators are in
  for (size_t i = 0; i < events.size(); ++i) {
    const ProfileEvent& e = events[i];
    if (e.kind == ProfileEvent::kDelegateOp) {
      if (kernel < events.size()) own[kernel] -= e.us;
      continue;
    }
    while (!open.empty() && !NestedIn(e, events[open.back()], kSlackUs)) {
      open.pop_back();
    }
    if (!open.empty()) own[open.back()] -= e.us;
    own[i] += e.us;
    open.push_back(i);
    if (e.kind == ProfileEvent::kDelegateNode) kernel = i;
  }

  std::vector<OpTime> rows;
  rows.reserve(events.size());
  int64_t kernel_index = -1;
  for (size_t i = 0; i < events.size(); ++i) {
    const ProfileEvent& e = events[i];
    OpTime row;
    row.kind = e.kind;
    row.name = e.name;
    row.us = e.kind == ProfileEvent::kDelegateOp ? e.us : own[i];
    switch (e.kind) {
      case ProfileEvent::kNode:
        row.node = e.index;
        row.subgraph = e.subgraph;
        break;
      case ProfileEvent::kDelegateNode:
        kernel_index = e.index;
        row.kernel = e.index;
        break;
      case ProfileEvent::kDelegateOp:
        row.kernel = kernel_index;
        row.op = e.index;
        break;
      case ProfileEvent::kRuntime:
        row.subgraph = e.subgraph;
        break;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// ------------------------------------------------------------- telemetry --

TelemetryRecorder::TelemetryRecorder()
    : callbacks_(new TfLiteTelemetryProfilerStruct()) {
  callbacks_->data = this;
  callbacks_->ReportBeginOpInvokeEvent = &TelemetryRecorder::Begin;
  callbacks_->ReportEndOpInvokeEvent = &TelemetryRecorder::End;
  callbacks_->ReportOpInvokeEvent = &TelemetryRecorder::Timed;
  // Telemetry status events and settings are not op timings, but every
  // callback must be set: the interpreter calls them unchecked (a NULL one
  // crashed TfLiteInterpreterCreate, which reports its settings).
  callbacks_->ReportTelemetryEvent = [](TfLiteTelemetryProfilerStruct*,
                                        const char*, uint64_t) {};
  callbacks_->ReportTelemetryOpEvent = [](TfLiteTelemetryProfilerStruct*,
                                          const char*, int64_t, int64_t,
                                          uint64_t) {};
  callbacks_->ReportSettings = [](TfLiteTelemetryProfilerStruct*, const char*,
                                  const TfLiteTelemetrySettings*) {};
  records_.reserve(4096);
}

TelemetryRecorder::~TelemetryRecorder() { delete callbacks_; }

void TelemetryRecorder::Start() {
  records_.clear();
  origin_ = Clock::now();
  recording_ = true;
}

double TelemetryRecorder::Micros(Clock::time_point t) const {
  return std::chrono::duration<double, std::micro>(t - origin_).count();
}

void TelemetryRecorder::Span(const char* name, Clock::time_point begin,
                             Clock::time_point end) {
  if (!recording_) return;
  Record record;
  record.event.kind = ProfileEvent::kRuntime;
  record.event.name = name;
  record.begin = begin;
  record.end = end;
  records_.push_back(std::move(record));
}

// Events in the order they began (a span is recorded when it ends; a
// delegate operator at its report, between the nodes around its kernel). A
// kernel node runs from the end of the last node before it (or the start of
// the node or span it is nested in, or of the recording) to its operators'
// report, which it makes as its run ends. The interpreter's own work
// between the two nodes is in that span too; a few microseconds.
std::vector<ProfileEvent> TelemetryRecorder::Stop() {
  recording_ = false;
  std::stable_sort(records_.begin(), records_.end(),
                   [](const Record& a, const Record& b) { return a.begin < b.begin; });
  std::vector<ProfileEvent> events;
  events.reserve(records_.size());
  for (Record& r : records_) {
    if (r.event.kind != ProfileEvent::kDelegateOp) {
      const Clock::time_point end = r.end < r.begin ? r.begin : r.end;
      r.event.start_us = Micros(r.begin);
      r.event.us = std::chrono::duration<double, std::micro>(end - r.begin).count();
    } else {
      r.event.start_us = Micros(r.begin);  // the report, for the kernel's span
    }
    events.push_back(std::move(r.event));
  }
  records_.clear();

  const std::vector<std::pair<size_t, size_t>> runs = KernelRuns(events);
  std::vector<std::pair<double, double>> spans;
  for (const auto& run : runs) {
    const double report = events[run.second].start_us;
    double parent_start = 0, last_end = 0;
    for (const ProfileEvent& e : events) {  // the innermost span open then
      if (e.kind != ProfileEvent::kDelegateOp && e.start_us < report &&
          report <= e.start_us + e.us && e.start_us >= parent_start) {
        parent_start = e.start_us;
      }
    }
    last_end = parent_start;
    for (const ProfileEvent& e : events) {  // the last one ended before it
      const double end = e.start_us + e.us;
      if (e.kind == ProfileEvent::kNode && e.start_us >= parent_start &&
          end <= report) {
        last_end = std::max(last_end, end);
      }
    }
    // A kernel right after another, no node between: it starts at that
    // one's report, so no time is counted twice.
    for (const auto& before : spans) {
      const double end = before.first + before.second;
      if (end >= parent_start && end <= report) last_end = std::max(last_end, end);
    }
    spans.emplace_back(last_end, report - last_end);
  }
  return WithKernelNodes(std::move(events), runs, spans);
}

// The handle is the record's index; the clock is read last on the way in
// and first on the way out, so the record keeping stays outside the op.
uint32_t TelemetryRecorder::Begin(TfLiteTelemetryProfilerStruct* profiler,
                                  const char* op_name, int64_t op_idx,
                                  int64_t subgraph_idx) {
  auto* self = static_cast<TelemetryRecorder*>(profiler->data);
  if (!self->recording_) return UINT32_MAX;
  Record record;
  record.event.name = op_name != nullptr ? op_name : "";
  record.event.index = op_idx;
  record.event.subgraph = subgraph_idx;
  self->records_.push_back(std::move(record));
  const auto handle = static_cast<uint32_t>(self->records_.size() - 1);
  self->records_.back().begin = Clock::now();
  return handle;
}

void TelemetryRecorder::End(TfLiteTelemetryProfilerStruct* profiler,
                            uint32_t handle) {
  const Clock::time_point now = Clock::now();
  auto* self = static_cast<TelemetryRecorder*>(profiler->data);
  if (handle < self->records_.size()) self->records_[handle].end = now;
}

// XNNPACK reports its operators' timings (whole microseconds) when its
// kernel's run ends.
void TelemetryRecorder::Timed(TfLiteTelemetryProfilerStruct* profiler,
                              const char* op_name, uint64_t elapsed_us,
                              int64_t op_idx, int64_t subgraph_idx) {
  const Clock::time_point now = Clock::now();
  auto* self = static_cast<TelemetryRecorder*>(profiler->data);
  if (!self->recording_) return;
  Record record;
  record.event.kind = ProfileEvent::kDelegateOp;
  record.event.name = op_name != nullptr ? op_name : "";
  record.event.index = op_idx;
  record.event.subgraph = subgraph_idx;
  record.event.us = static_cast<double>(elapsed_us);
  record.begin = now;
  self->records_.push_back(std::move(record));
}

// ---------------------------------------------------------------- LiteRT --

#if LLM_RUNNER_HAS_COMPILED_MODEL

namespace {

// The events a compiled model's profiler holds (LiteRtProfilerT(2048) in
// LiteRT's compiled_model.cc; fixed there). Full TinyLlama records about
// 1,500 a phase.
constexpr int kLiteRtProfilerCapacity = 2048;

void CheckProfiler(LiteRtStatus status, const char* call) {
  if (status != kLiteRtStatusOk) {
    FailRuntime(std::string(call) + " failed: " + LiteRtGetStatusString(status));
  }
}

// An event whose fields hold what litert_c_api.h says: a tag, one known
// event type bit, a known source. A wrong stride reads pointers and
// timestamps where these are and fails here.
bool Plausible(const LiteRtProfiledEvent& e) {
  const int32_t type = e.event_type;
  return e.tag != nullptr && type > 0 && type <= (1 << 8) &&
         (type & (type - 1)) == 0 && e.event_source >= 0 &&
         e.event_source <= 2;
}

// The compiled model's run as a span holding LiteRT's own (from their first
// start), as long as the engine timed the LiteRtRunCompiledModel call: its
// time outside LiteRT's profiled spans then has a row too (tens of
// microseconds a run here). Without the call's time (none, or several runs
// recorded at once), it spans LiteRT's spans only.
void AddRunSpan(std::vector<ProfileEvent>* events,
                const std::vector<double>& runs_us) {
  double first = -1, last = 0;
  for (const ProfileEvent& e : *events) {
    if (e.kind != ProfileEvent::kRuntime) continue;
    first = first < 0 ? e.start_us : std::min(first, e.start_us);
    last = std::max(last, e.start_us + e.us);
  }
  if (first < 0) return;
  ProfileEvent run;
  run.kind = ProfileEvent::kRuntime;
  run.name = "LiteRtRunCompiledModel";
  run.start_us = first;
  run.us = std::max(last - first, runs_us.size() == 1 ? runs_us[0] : 0.0);
  events->insert(events->begin(), std::move(run));
}

}  // namespace

// LiteRT's events in the order they began: a run's spans (buffer
// registration, the subgraph's Invoke, buffer sync), the nodes inside the
// Invoke, and each kernel's operators where the kernel ran. A kernel runs
// from the end of the last node before it (or the Invoke's start) to the
// start of the next node (or the Invoke's end).
std::vector<ProfileEvent> ReadLiteRtEvents(LiteRtProfiler profiler,
                                           const std::vector<double>& runs_us) {
  int n = 0;
  CheckProfiler(LiteRtGetNumProfilerEvents(profiler, &n),
                "LiteRtGetNumProfilerEvents");
  std::vector<ProfileEvent> events;
  if (n <= 0) return events;
  std::vector<LiteRtProfiledEvent> raw(static_cast<size_t>(n));
  CheckProfiler(LiteRtGetProfilerEvents(profiler, n, raw.data()),
                "LiteRtGetProfilerEvents");
  if (n >= kLiteRtProfilerCapacity) {
    std::fprintf(stderr,
                 "note: LiteRT's profiler holds %d events and recorded that "
                 "many; the profile may miss some (its rows then fall short "
                 "of the wall time)\n",
                 n);
  }
  uint64_t origin = UINT64_MAX;
  for (const LiteRtProfiledEvent& e : raw) {
    if (!Plausible(e)) {
      FailRuntime("LiteRT's profiler events do not read as litert_c_api.h "
                  "lays out LiteRtProfiledEvent; this runtime cannot be "
                  "profiled");
    }
    if (e.event_type == kTfLiteProfileDefault ||
        e.event_type == kTfLiteProfileOperatorInvoke) {
      origin = std::min(origin, e.start_timestamp_us);
    }
  }
  for (const LiteRtProfiledEvent& e : raw) {
    ProfileEvent event;
    event.name = e.tag;
    event.index = e.event_metadata1;
    event.subgraph = e.event_metadata2;
    event.us = static_cast<double>(e.elapsed_time_us);
    event.start_us = static_cast<double>(e.start_timestamp_us - origin);
    if (e.event_type == kTfLiteProfileOperatorInvoke) {
      event.kind = ProfileEvent::kNode;
    } else if (e.event_type == kTfLiteProfileDefault) {
      event.kind = ProfileEvent::kRuntime;
      event.index = -1;
    } else if (e.event_type == kTfLiteProfileDelegateOperatorInvoke ||
               e.event_type == kTfLiteProfileDelegateProfiledOperatorInvoke) {
      event.kind = ProfileEvent::kDelegateOp;
    } else {
      continue;  // telemetry status events: no duration
    }
    events.push_back(std::move(event));
  }
  AddRunSpan(&events, runs_us);

  const std::vector<std::pair<size_t, size_t>> runs = KernelRuns(events);
  std::vector<std::pair<double, double>> spans;
  for (const auto& run : runs) {
    const ProfileEvent* invoke = nullptr;  // the run's span, begun before it
    double last_end = 0;
    for (size_t i = 0; i < run.first; ++i) {
      const ProfileEvent& e = events[i];
      if (e.kind == ProfileEvent::kRuntime) {
        invoke = &e;
        last_end = e.start_us;
      } else if (e.kind == ProfileEvent::kNode) {
        last_end = std::max(last_end, e.start_us + e.us);
      }
    }
    // A kernel right after another, no node between (their operators carry
    // no times to split the gap by): the first takes the gap, this one none.
    if (!spans.empty()) {
      last_end = std::max(last_end, spans.back().first + spans.back().second);
    }
    double next = invoke != nullptr ? invoke->start_us + invoke->us : last_end;
    for (size_t i = run.second + 1; i < events.size(); ++i) {
      if (events[i].kind == ProfileEvent::kRuntime) break;
      if (events[i].kind == ProfileEvent::kNode) {
        next = std::min(next, events[i].start_us);
        break;
      }
    }
    spans.emplace_back(last_end, std::max(0.0, next - last_end));
  }
  return WithKernelNodes(std::move(events), runs, spans);
}

#endif  // LLM_RUNNER_HAS_COMPILED_MODEL

}  // namespace llm_runner
