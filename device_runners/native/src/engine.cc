#include "engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "litert_c_api.h"

namespace llm_runner {

const char kTokensName[] = "tokens";
const char kInputPosName[] = "input_pos";
const char kLogitsName[] = "logits";

void FailModel(const std::string& path, const std::string& reason) {
  throw RunnerError(kExitModel,
                    "cannot load model file '" + path + "': " + reason);
}

void FailRuntime(const std::string& what) {
  throw RunnerError(kExitRuntime, what);
}

TfLiteXNNPackDelegateOptions CheckedXnnpackDefaults() {
  TfLiteXNNPackDelegateOptions options = TfLiteXNNPackDelegateOptionsDefault();
  // The defaults zero every field but this one (xnnpack_delegate.cc), so a
  // -1 here, 40 bytes in, says the fields before it sit where we write them.
  if (options.weight_cache_file_descriptor != -1 ||
      options.weight_cache_file_path != nullptr) {
    FailRuntime("TfLiteXNNPackDelegateOptionsDefault() does not read as "
                "TFLite 2.23's TfLiteXNNPackDelegateOptions (litert_c_api.h); "
                "this runtime's XNNPACK options cannot be set");
  }
  return options;
}

namespace {

bool StartsWith(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Every input must be one the runner feeds, and every KV input must come back
// as an output of the same name (that is what lets one buffer serve both).
void CheckSignature(const std::string& path, const char* signature,
                    const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs) {
  for (const char* required : {kTokensName, kInputPosName}) {
    if (!Contains(inputs, required)) {
      FailModel(path, std::string("signature '") + signature +
                          "' has no input '" + required + "'");
    }
  }
  for (const auto& name : inputs) {
    if (name == kTokensName || name == kInputPosName) continue;
    if (!IsKvCacheName(name)) {
      FailModel(path, std::string("signature '") + signature +
                          "' has an unexpected input '" + name + "'");
    }
    if (!Contains(outputs, name)) {
      FailModel(path, std::string("signature '") + signature +
                          "' does not output its KV input '" + name + "'");
    }
  }
}

std::vector<std::string> KvNames(const std::vector<std::string>& names) {
  std::vector<std::string> kv;
  for (const auto& n : names) {
    if (IsKvCacheName(n)) kv.push_back(n);
  }
  std::sort(kv.begin(), kv.end());
  return kv;
}

}  // namespace

bool IsKvCacheName(const std::string& name) {
  return StartsWith(name, "kv_cache_k_") || StartsWith(name, "kv_cache_v_");
}

bool IsKvKeyName(const std::string& name) {
  return StartsWith(name, "kv_cache_k_");
}

int KvCacheLength(const std::string& path, const std::vector<int>& k_dims,
                  const std::vector<int>& v_dims) {
  if (k_dims.size() == 4 && k_dims == v_dims) return k_dims[1];
  if (k_dims.size() == 4 && v_dims.size() == 4 && k_dims[1] == v_dims[1] &&
      k_dims[2] == v_dims[3] && k_dims[3] == v_dims[2]) {
    return k_dims[2];
  }
  FailModel(path,
            "KV cache is neither [1, kv_len, heads, head_dim] for K and V nor "
            "K [1, heads, kv_len, head_dim] with V [1, heads, head_dim, kv_len]");
}

SignaturePair FindSignatures(const std::string& path,
                             const std::vector<std::string>& keys) {
  const auto index_of = [&](const std::string& key) {
    return static_cast<size_t>(std::find(keys.begin(), keys.end(), key) -
                               keys.begin());
  };
  SignaturePair pair;
  pair.decode = index_of("decode");
  pair.prefill = index_of("prefill");
  if (pair.prefill == keys.size()) {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!StartsWith(keys[i], "prefill")) continue;
      if (pair.prefill != keys.size()) {
        FailModel(path, "more than one prefill signature (" + Join(keys) + ")");
      }
      pair.prefill = i;
    }
  }
  if (pair.prefill == keys.size() || pair.decode == keys.size()) {
    FailModel(path, "expected signatures 'prefill' and 'decode', found: " +
                        (keys.empty() ? std::string("none") : Join(keys)));
  }
  return pair;
}

ModelInfo CheckSignatureNames(const std::string& path,
                              const std::vector<std::string>& prefill_inputs,
                              const std::vector<std::string>& prefill_outputs,
                              const std::vector<std::string>& decode_inputs,
                              const std::vector<std::string>& decode_outputs) {
  CheckSignature(path, "prefill", prefill_inputs, prefill_outputs);
  CheckSignature(path, "decode", decode_inputs, decode_outputs);
  if (!Contains(decode_outputs, kLogitsName)) {
    FailModel(path, "signature 'decode' has no output 'logits'");
  }
  const std::vector<std::string> kv = KvNames(prefill_inputs);
  if (kv != KvNames(decode_inputs)) {
    FailModel(path, "prefill and decode take different KV cache inputs");
  }
  ModelInfo info;
  info.num_layers = static_cast<int>(
      std::count_if(kv.begin(), kv.end(), IsKvKeyName));
  if (info.num_layers == 0 ||
      kv.size() != 2 * static_cast<size_t>(info.num_layers)) {
    FailModel(path, "expected kv_cache_k_i/kv_cache_v_i input pairs, found: " +
                        (kv.empty() ? std::string("none") : Join(kv)));
  }
  return info;
}

AlignedBuffer::AlignedBuffer(size_t bytes) : size_(bytes) {
  constexpr size_t kAlignment = 64;
  // Round up so the runtime may read whole vectors past the last element.
  const size_t padded = std::max<size_t>(kAlignment,
                                         (bytes + kAlignment - 1) / kAlignment *
                                             kAlignment);
  if (posix_memalign(&data_, kAlignment, padded) != 0) {
    data_ = nullptr;
    FailRuntime("out of memory allocating " + std::to_string(bytes) +
                " bytes");
  }
  std::memset(data_, 0, padded);
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

void AlignedBuffer::Zero() {
  if (size_ != 0) std::memset(data_, 0, size_);
}

}  // namespace llm_runner
