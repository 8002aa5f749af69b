// Test helper: runs an ir::Graph node by node on the CPU kernels (the reference) and compares
// tensors, so pass tests can check that a rewritten graph computes what the original did.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/half.hpp"
#include "graph_test_builder.hpp"

namespace kiln::testing {

inline std::vector<HostTensor> evaluate(const ir::Graph& graph,
                                        const std::map<std::string, HostTensor>& inputs) {
  std::map<ir::ValueId, HostTensor> values;
  for (ir::ValueId in : graph.inputs) values[in] = inputs.at(graph.value(in).name);
  for (size_t v = 0; v < graph.values.size(); ++v) {
    if (graph.values[v].constant) values[static_cast<ir::ValueId>(v)] = *graph.values[v].constant;
  }
  for (const ir::Node& node : graph.nodes) {
    if (node.removed) continue;
    std::vector<const HostTensor*> args;
    for (ir::ValueId in : node.inputs) args.push_back(in < 0 ? nullptr : &values.at(in));
    std::vector<HostTensor> outs =
        cpu::run_node_on_cpu(node.name, node.op_type, node.attrs, args, node.outputs.size());
    for (size_t o = 0; o < outs.size(); ++o) values[node.outputs[o]] = std::move(outs[o]);
  }
  std::vector<HostTensor> result;
  for (ir::ValueId out : graph.outputs) result.push_back(values.at(out));
  return result;
}

inline float element(const HostTensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kFloat32:
      return t.data<float>()[i];
    case DType::kFloat16:
      return half_to_float(t.data<uint16_t>()[i]);
    default:
      return bfloat16_to_float(t.data<uint16_t>()[i]);
  }
}

// Every element within `relative` of the reference, relative to max(|ref element|, 1); NaN only
// where the reference has NaN.
inline void expect_close(const HostTensor& got, const HostTensor& want, float relative) {
  ASSERT_EQ(got.dtype, want.dtype);
  ASSERT_EQ(got.shape, want.shape);
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float w = element(want, i), g = element(got, i);
    if (std::isnan(w)) {
      ASSERT_TRUE(std::isnan(g)) << "element " << i << ": " << g << " vs NaN";
      continue;
    }
    ASSERT_LE(std::fabs(g - w), relative * std::max(std::fabs(w), 1.0f))
        << "element " << i << ": " << g << " vs " << w;
  }
}

// The largest error within `relative` of the reference's largest magnitude (at least 1): for
// rewrites whose rounding spreads over a whole tensor (precision lowering, re-laid-out sums).
inline void expect_close_to_scale(const HostTensor& got, const HostTensor& want, float relative) {
  ASSERT_EQ(got.dtype, want.dtype);
  ASSERT_EQ(got.shape, want.shape);
  float scale = 0.0f, worst = 0.0f;
  for (int64_t i = 0; i < want.numel(); ++i) {
    scale = std::max(scale, std::fabs(element(want, i)));
    worst = std::max(worst, std::fabs(element(got, i) - element(want, i)));
  }
  EXPECT_GT(scale, 0.0f) << "degenerate reference";
  EXPECT_LE(worst, relative * std::max(scale, 1.0f))
      << "max abs error " << worst << ", max |ref| " << scale;
}

inline HostTensor to_half(const HostTensor& t) {
  HostTensor h(DType::kFloat16, t.shape);
  for (int64_t i = 0; i < t.numel(); ++i) h.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
  return h;
}

inline std::map<std::string, HostTensor> random_inputs(const ir::Graph& graph, uint32_t seed,
                                                       float low = -3.0f, float high = 3.0f) {
  std::mt19937 rng(seed);
  std::map<std::string, HostTensor> inputs;
  for (ir::ValueId in : graph.inputs) {
    HostTensor t = random_tensor_f32(graph.value(in).shape, rng, low, high);
    inputs[graph.value(in).name] = graph.value(in).dtype == DType::kFloat16 ? to_half(t) : t;
  }
  return inputs;
}

}  // namespace kiln::testing
