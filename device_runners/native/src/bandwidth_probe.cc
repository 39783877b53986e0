#include "bandwidth_probe.h"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine.h"

namespace llm_runner {

#if LLM_RUNNER_CAN_FORK
namespace {

// Runs fn(begin, end, t) for each thread t's contiguous share of n items on
// its own std::thread, and joins them.
template <typename Fn>
void ForEachChunk(size_t n, int threads, Fn fn) {
  const size_t count = static_cast<size_t>(threads);
  std::vector<std::thread> workers;
  workers.reserve(count);
  for (size_t t = 0; t < count; ++t) {
    const size_t begin = n / count * t + std::min(t, n % count);
    const size_t end = begin + n / count + (t < n % count ? 1 : 0);
    workers.emplace_back(fn, begin, end, t);
  }
  for (std::thread& worker : workers) worker.join();
}

// Four independent sums, so the loop is not one serial chain of adds;
// integer adds may be reassociated, so the compiler vectorises it too. The
// caller checks the total, which keeps the reads from being optimised away.
// Eight sequential streams per thread, read in lockstep. A single stream per
// core measured ~32 GB/s here while a decode step streamed ~60 GB/s of weights:
// the prefetchers and line-fill buffers track several streams at once, and a
// matrix-vector product reads many weight rows concurrently.
uint64_t SumWords(const uint64_t* words, size_t n) {
  constexpr size_t kStreams = 8;
  const size_t len = n / kStreams;
  uint64_t sums[kStreams] = {};
  for (size_t i = 0; i < len; ++i) {
    for (size_t k = 0; k < kStreams; ++k) sums[k] += words[k * len + i];
  }
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  for (size_t i = kStreams * len; i < n; ++i) total += words[i];
  return total;
}

std::vector<double> MeasureHere(size_t bytes, int threads, int passes) {
  const size_t n = bytes / sizeof(uint64_t);
  // Not value-initialised: the pages stay untouched until the fill below.
  std::unique_ptr<uint64_t[]> words(new uint64_t[n]);
  // First touch, by the thread that later reads the chunk (its pages land on
  // that thread's memory node), so no page fault falls inside a timed pass.
  ForEachChunk(n, threads, [&](size_t begin, size_t end, size_t) {
    for (size_t i = begin; i < end; ++i) words[i] = i;
  });
  // 0 + 1 + ... + (n-1), modulo 2^64 like the sums.
  const uint64_t expected = n % 2 == 0 ? n / 2 * (n - 1) : (n - 1) / 2 * n;

  std::vector<uint64_t> partial(static_cast<size_t>(threads));
  std::vector<double> gb_s;
  for (int pass = 0; pass < passes; ++pass) {
    // Timed from before the threads start until all have joined: starting
    // and joining costs tens of microseconds, under 1% of a pass over a
    // buffer far larger than the last-level cache.
    const auto start = std::chrono::steady_clock::now();
    ForEachChunk(n, threads, [&](size_t begin, size_t end, size_t t) {
      partial[t] = SumWords(words.get() + begin, end - begin);
    });
    const std::chrono::duration<double> seconds =
        std::chrono::steady_clock::now() - start;
    uint64_t total = 0;
    for (uint64_t p : partial) total += p;
    if (total != expected) throw std::runtime_error("wrong sum read back");
    gb_s.push_back(static_cast<double>(n * sizeof(uint64_t)) /
                   seconds.count() / 1e9);
  }
  return gb_s;
}

bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// True when exactly `size` bytes arrived before end of file.
bool ReadAll(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  size_t got = 0;
  char extra;
  while (true) {
    const ssize_t n = got < size ? read(fd, p + got, size - got)
                                 : read(fd, &extra, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return got == size;
    if (got == size) return false;  // more than expected
    got += static_cast<size_t>(n);
  }
}

std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status));
  }
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace
#endif  // LLM_RUNNER_CAN_FORK

double Bandwidth::Best() const {
  return passes_gb_s.empty()
             ? 0.0
             : *std::max_element(passes_gb_s.begin(), passes_gb_s.end());
}

double Bandwidth::Median() const {
  if (passes_gb_s.empty()) return 0.0;
  std::vector<double> sorted = passes_gb_s;
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[mid]
                                : (sorted[mid - 1] + sorted[mid]) / 2.0;
}

#if !LLM_RUNNER_CAN_FORK

Bandwidth ProbeReadBandwidth(size_t bytes, int, int) {
  throw RunnerError(kExitUsage,
                    "--bandwidth-probe-mb " + std::to_string(bytes >> 20) +
                        ": the bandwidth probe runs in a forked child and "
                        "iOS apps cannot fork; pass --bandwidth-probe-mb 0");
}

#else

Bandwidth ProbeReadBandwidth(size_t bytes, int threads, int passes) {
  const std::string hint = " (--bandwidth-probe-mb 0 skips the probe)";
  int fds[2];
  if (pipe(fds) != 0) {
    FailRuntime("bandwidth probe: pipe failed: " +
                std::string(std::strerror(errno)) + hint);
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    FailRuntime("bandwidth probe: fork failed: " +
                std::string(std::strerror(errno)) + hint);
  }
  if (pid == 0) {
    // Child: report through the pipe and leave with _exit, which neither
    // runs the parent's atexit handlers nor flushes its stdio buffers.
    close(fds[0]);
    int status = 1;
    try {
      const std::vector<double> gb_s = MeasureHere(bytes, threads, passes);
      if (WriteAll(fds[1], gb_s.data(), gb_s.size() * sizeof(double))) {
        status = 0;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bandwidth probe: %s\n", e.what());
    }
    _exit(status);
  }

  close(fds[1]);
  Bandwidth result;
  result.probe_bytes = bytes;
  result.threads = threads;
  result.passes_gb_s.resize(static_cast<size_t>(passes));
  const bool complete = ReadAll(fds[0], result.passes_gb_s.data(),
                                result.passes_gb_s.size() * sizeof(double));
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      FailRuntime("bandwidth probe: waitpid failed: " +
                  std::string(std::strerror(errno)) + hint);
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !complete) {
    FailRuntime("bandwidth probe over " + std::to_string(bytes) +
                " bytes failed: " +
                (complete ? DescribeExit(status) : "incomplete result, " +
                                                       DescribeExit(status)) +
                hint);
  }
  return result;
}

#endif  // LLM_RUNNER_CAN_FORK

}  // namespace llm_runner
