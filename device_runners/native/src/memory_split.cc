#include "memory_split.h"

#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace llm_runner {
namespace {

// The canonical path the kernel shows for a mapping of this file; empty when
// the path is empty or does not resolve (no weight cache).
std::string Canonical(const std::string& path) {
  if (path.empty()) return "";
  char resolved[PATH_MAX];
  return realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : "";
}

// "Rss:   1234 kB" → 1234, for the field names this reader adds up.
bool Field(const std::string& line, const char* name, int64_t* kb) {
  const std::string prefix = std::string(name) + ":";
  if (line.rfind(prefix, 0) != 0) return false;
  *kb = std::strtoll(line.c_str() + prefix.size(), nullptr, 10);
  return true;
}

// A mapping's header line: "start-end perms offset dev inode [path]". Field
// lines ("Rss:    4 kB") have a colon in their first word; headers do not.
bool IsHeader(const std::string& line) {
  const size_t space = line.find(' ');
  const std::string first = line.substr(0, space);
  return first.find('-') != std::string::npos && first.find(':') == std::string::npos;
}

// The header's path (the sixth field onwards), or "" for an anonymous one.
std::string MappingPath(const std::string& header) {
  std::istringstream fields(header);
  std::string skip;
  for (int i = 0; i < 5; ++i) fields >> skip;
  std::string path;
  std::getline(fields >> std::ws, path);
  return path;
}

}  // namespace

std::optional<MemorySplit> ReadMemorySplit(const std::string& phase,
                                           const std::string& model_path,
                                           const std::string& weight_cache_path) {
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return std::nullopt;
  const std::string model = Canonical(model_path);
  const std::string cache = Canonical(weight_cache_path);
  MemorySplit split;
  split.phase = phase;
  std::string line, path;
  int64_t kb = 0, rss = 0, anonymous = 0;
  // Each mapping's file-backed resident pages: its Rss less its Anonymous
  // (copy-on-write pages of a private file mapping are anonymous).
  auto close_mapping = [&]() {
    const int64_t file_kb = rss - anonymous;
    if (!path.empty() && path[0] == '/' && file_kb > 0) {
      if (!model.empty() && path == model) {
        split.model_file_kb += file_kb;
      } else if (!cache.empty() && path == cache) {
        split.weight_cache_kb += file_kb;
      } else {
        split.other_file_kb += file_kb;
      }
    }
    rss = anonymous = 0;
  };
  bool any = false;
  while (std::getline(smaps, line)) {
    if (IsHeader(line)) {
      if (any) close_mapping();
      path = MappingPath(line);
      any = true;
    } else if (Field(line, "Rss", &kb)) {
      rss = kb;
      split.rss_kb += kb;
    } else if (Field(line, "Pss", &kb)) {
      split.pss_kb += kb;
    } else if (Field(line, "Anonymous", &kb)) {
      anonymous = kb;
      split.anonymous_kb += kb;
    } else if (Field(line, "Private_Dirty", &kb)) {
      split.private_dirty_kb += kb;
    } else if (Field(line, "Swap", &kb)) {
      split.swap_kb += kb;
    }
  }
  if (!any) return std::nullopt;
  close_mapping();
  return split;
}

}  // namespace llm_runner
