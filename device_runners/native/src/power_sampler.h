// What the device's power meters read around the timed phases (--power-file,
// --power-counter), for energy per token.
//
// A thread reads each --power-file's number every 1/hz s (a battery's
// current_now and voltage_now, an INA3221 rail's millivolts and milliamps),
// and the runner reads each --power-counter's whole text at the start and end
// of every window (RAPL's energy_uj, a Pixel power monitor's energy_value):
// the idle window before the measured repetitions, then each one's prefill
// and decode. Times are the runner's steady clock (CLOCK_MONOTONIC on Linux
// and Android), the clock the phases are timed with, so a trace lines up with
// the windows exactly.
//
// The runner only reads and stamps: units, signs, counter wraps and which
// rails to add are the harness's (harness/measure/energy.py), so one vendor's
// quirk is a line of Python rather than a runner rebuild.
#ifndef LLM_RUNNER_POWER_SAMPLER_H_
#define LLM_RUNNER_POWER_SAMPLER_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace llm_runner {

// One tick of the sampler: each --power-file's first integer, in flag order;
// none where the read failed or held no number.
struct PowerSample {
  int64_t t_ns = 0;
  std::vector<std::optional<int64_t>> values;
};

// A timed span of the run: "idle" (rep -1), or a measured repetition's
// "prefill" or "decode" (rep 0, 1, ...); each --power-counter's text as read
// just before it started and just after it ended.
struct PowerWindow {
  std::string phase;
  int rep = -1;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  std::vector<std::string> start_text;
  std::vector<std::string> end_text;
};

struct PowerTrace {
  int hz = 0;  // asked for; the harness counts what it got from the samples
  std::vector<std::string> files;
  std::vector<std::string> counters;
  std::vector<PowerSample> samples;
  std::vector<PowerWindow> windows;
};

// Now on the steady clock, in nanoseconds since its epoch.
int64_t SteadyNowNs();

class PowerSampler {
 public:
  PowerSampler(std::vector<std::string> files, std::vector<std::string> counters, int hz);
  ~PowerSampler();  // stops the thread if Finish was not called
  PowerSampler(const PowerSampler&) = delete;
  PowerSampler& operator=(const PowerSampler&) = delete;

  // Starts the sampling thread (none without --power-file paths).
  void Start();
  // Opens a window: reads the counters, then stamps its start. Returns its
  // index, for End.
  size_t Begin(const std::string& phase, int rep);
  // Closes it: stamps its end, then reads the counters.
  void End(size_t window);
  // Stops the thread and hands over what was read.
  PowerTrace Finish();

 private:
  void Loop();
  std::vector<std::string> ReadCounters() const;

  PowerTrace trace_;
  std::thread thread_;
  std::mutex mutex_;  // guards trace_.samples and stop_
  std::condition_variable wake_;
  bool stop_ = false;
};

}  // namespace llm_runner

#endif  // LLM_RUNNER_POWER_SAMPLER_H_
