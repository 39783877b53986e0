// unique_ptr for C API handles: Owned<LiteRtModel, LiteRtDestroyModel>.
#ifndef LLM_RUNNER_OWNED_H_
#define LLM_RUNNER_OWNED_H_

#include <memory>
#include <type_traits>

namespace llm_runner {

template <typename Handle, void (*Destroy)(Handle)>
struct HandleDeleter {
  void operator()(Handle handle) const { Destroy(handle); }
};

template <typename Handle, void (*Destroy)(Handle)>
using Owned = std::unique_ptr<std::remove_pointer_t<Handle>,
                              HandleDeleter<Handle, Destroy>>;

}  // namespace llm_runner

#endif  // LLM_RUNNER_OWNED_H_
