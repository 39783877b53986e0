#include "power_sampler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <utility>

namespace llm_runner {
namespace {

// A sysfs attribute's current text: opened afresh each time, since sysfs
// computes the value at open (and a FIFO standing in for one serves one
// value per open). Empty when unreadable.
std::string ReadText(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string text;
  char buffer[4096];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      text.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fd);
  return text;
}

std::optional<int64_t> FirstInteger(const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(begin, &end, 10);
  if (end == begin || errno != 0) return std::nullopt;
  return static_cast<int64_t>(value);
}

}  // namespace

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

PowerSampler::PowerSampler(std::vector<std::string> files,
                           std::vector<std::string> counters, int hz) {
  trace_.files = std::move(files);
  trace_.counters = std::move(counters);
  trace_.hz = hz;
}

PowerSampler::~PowerSampler() {
  if (thread_.joinable()) Finish();
}

void PowerSampler::Start() {
  if (!trace_.files.empty()) thread_ = std::thread(&PowerSampler::Loop, this);
}

// Ticks on a fixed schedule (start + i/hz), not "sleep 1/hz after each
// read", so slow reads do not stretch the period.
void PowerSampler::Loop() {
  const auto period = std::chrono::nanoseconds(1000000000LL / trace_.hz);
  auto next = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    lock.unlock();
    PowerSample sample;
    sample.t_ns = SteadyNowNs();
    for (const std::string& file : trace_.files) {
      sample.values.push_back(FirstInteger(ReadText(file)));
    }
    lock.lock();
    trace_.samples.push_back(std::move(sample));
    next += period;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // reads slower than the period: no burst
    wake_.wait_until(lock, next, [this] { return stop_; });
  }
}

std::vector<std::string> PowerSampler::ReadCounters() const {
  std::vector<std::string> texts;
  for (const std::string& counter : trace_.counters) texts.push_back(ReadText(counter));
  return texts;
}

size_t PowerSampler::Begin(const std::string& phase, int rep) {
  PowerWindow window;
  window.phase = phase;
  window.rep = rep;
  window.start_text = ReadCounters();
  window.start_ns = SteadyNowNs();
  trace_.windows.push_back(std::move(window));
  return trace_.windows.size() - 1;
}

void PowerSampler::End(size_t index) {
  PowerWindow& window = trace_.windows[index];
  window.end_ns = SteadyNowNs();
  window.end_text = ReadCounters();
}

PowerTrace PowerSampler::Finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  return std::move(trace_);
}

}  // namespace llm_runner
