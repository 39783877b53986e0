// CountWeightBytes: the model's constant buffers, walked with LiteRT's model
// API (the TFLite C API has no way to list a model's tensors). Used for both
// --api values, so both report the same figure for one file.
#include <cstdio>
#include <set>
#include <string>

#include "engine.h"
#include "litert_c_api.h"
#include "owned.h"

namespace llm_runner {

#if LLM_RUNNER_HAS_COMPILED_MODEL

namespace {

using EnvironmentPtr = Owned<LiteRtEnvironment, LiteRtDestroyEnvironment>;
using ModelPtr = Owned<LiteRtModel, LiteRtDestroyModel>;

// Thrown inside the walk; CountWeightBytes turns it into a warning.
struct WalkError {
  const char* call;
};

void Check(LiteRtStatus status, const char* call) {
  if (status != kLiteRtStatusOk) throw WalkError{call};
}

// Constant buffers counted so far, each buffer id once: prefill and decode
// name the same buffers.
class WeightTally {
 public:
  size_t total() const { return total_; }

  // Adds `tensor`'s buffer if it is a constant, and then the scales (and
  // zero points) of block-wise quantized weights, which are read with them.
  void Add(LiteRtTensor tensor) {
    if (tensor == nullptr) return;  // an omitted optional input
    LiteRtWeights weights = nullptr;
    const void* data = nullptr;
    size_t size = 0;
    int32_t buffer_id = 0;
    Check(LiteRtGetTensorWeights(tensor, &weights), "LiteRtGetTensorWeights");
    Check(LiteRtGetWeightsBytes(weights, &data, &size), "LiteRtGetWeightsBytes");
    if (size == 0) return;  // not a constant
    Check(LiteRtGetWeightsBufferId(weights, &buffer_id),
          "LiteRtGetWeightsBufferId");
    if (!seen_.insert(buffer_id).second) return;
    total_ += size;

    LiteRtQuantizationTypeId quantization = 0;
    Check(LiteRtGetQuantizationTypeId(tensor, &quantization),
          "LiteRtGetQuantizationTypeId");
    if (quantization != kLiteRtQuantizationBlockWise) return;
    LiteRtQuantizationBlockWise block_wise = {};
    Check(LiteRtGetBlockWiseQuantization(tensor, &block_wise),
          "LiteRtGetBlockWiseQuantization");
    Add(block_wise.scales);
    Add(block_wise.zero_points);
  }

 private:
  std::set<int32_t> seen_;
  size_t total_ = 0;
};

// Every constant reaches the graph as some op's input, or as the scales of
// one.
size_t SumConstantInputs(LiteRtModel model) {
  WeightTally tally;
  LiteRtParamIndex num_subgraphs = 0;
  Check(LiteRtGetNumModelSubgraphs(model, &num_subgraphs),
        "LiteRtGetNumModelSubgraphs");
  for (LiteRtParamIndex s = 0; s < num_subgraphs; ++s) {
    LiteRtSubgraph subgraph = nullptr;
    LiteRtParamIndex num_ops = 0;
    Check(LiteRtGetModelSubgraph(model, s, &subgraph), "LiteRtGetModelSubgraph");
    Check(LiteRtGetNumSubgraphOps(subgraph, &num_ops), "LiteRtGetNumSubgraphOps");
    for (LiteRtParamIndex o = 0; o < num_ops; ++o) {
      LiteRtOp op = nullptr;
      LiteRtParamIndex num_inputs = 0;
      Check(LiteRtGetSubgraphOp(subgraph, o, &op), "LiteRtGetSubgraphOp");
      Check(LiteRtGetNumOpInputs(op, &num_inputs), "LiteRtGetNumOpInputs");
      for (LiteRtParamIndex i = 0; i < num_inputs; ++i) {
        LiteRtTensor tensor = nullptr;
        Check(LiteRtGetOpInput(op, i, &tensor), "LiteRtGetOpInput");
        tally.Add(tensor);
      }
    }
  }
  return tally.total();
}

}  // namespace

size_t CountWeightBytes(const std::string& path) {
  try {
    LiteRtEnvironment env = nullptr;
    Check(LiteRtCreateEnvironment(0, nullptr, &env), "LiteRtCreateEnvironment");
    const EnvironmentPtr env_owner(env);
    LiteRtModel model = nullptr;
    Check(LiteRtCreateModelFromFile(env, path.c_str(), &model),
          "LiteRtCreateModelFromFile");
    const ModelPtr model_owner(model);
    return SumConstantInputs(model);
  } catch (const WalkError& e) {
    // A diagnostic figure: a failure costs the field (null), not the run.
    std::fprintf(stderr, "warning: cannot count weight bytes: %s failed\n",
                 e.call);
    return 0;
  }
}

#else  // !LLM_RUNNER_HAS_COMPILED_MODEL: no LiteRT model API (see engine.h)

size_t CountWeightBytes(const std::string&) {
  std::fprintf(stderr,
               "note: weight_bytes is null: counting them needs LiteRT's model "
               "API, which this build (TFLite C API only) does not link\n");
  return 0;
}

#endif  // LLM_RUNNER_HAS_COMPILED_MODEL

}  // namespace llm_runner
