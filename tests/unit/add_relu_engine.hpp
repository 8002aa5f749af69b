// The runtime tests' small engine, y = relu(x + bias), made by hand (no builder), and helpers to
// check what it computes and what its errors say.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "engine_model_builder.hpp"
#include "format/engine_io.hpp"

namespace kiln::testing {

using format::TensorKind;

inline format::Binding binding(const format::EngineModel& m, int32_t tensor, std::vector<format::DimRange> ranges = {}) {
  format::Binding b;
  b.name = m.tensors[static_cast<size_t>(tensor)].name;
  b.tensor = static_cast<uint32_t>(tensor);
  if (ranges.empty() && m.tensors[static_cast<size_t>(tensor)].kind == TensorKind::kInput) {
    for (int64_t d : m.tensors[static_cast<size_t>(tensor)].shape) ranges.push_back({d, d, d});
  }
  b.ranges = std::move(ranges);
  return b;
}

// y = relu(x + bias), with x of shape [batch, 4] (batch dynamic in [1, 8] when `dynamic`).
inline std::vector<uint8_t> make_add_relu_engine(bool dynamic) {
  format::EngineModel m;
  const int64_t batch = dynamic ? kDynamicDim : 2;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {batch, 4}, TensorKind::kInput);
  const int32_t bias = add_tensor(m, "bias", DType::kFloat32, {4}, TensorKind::kWeight);
  const int32_t sum = add_tensor(m, "sum", DType::kFloat32, {batch, 4}, TensorKind::kActivation);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, {batch, 4}, TensorKind::kOutput);
  const float bias_values[4] = {-1.0f, 0.0f, 1.0f, 2.0f};
  static std::vector<uint8_t> blob(64);
  std::memcpy(blob.data(), bias_values, sizeof bias_values);
  m.tensors[static_cast<size_t>(bias)].weight_offset = 0;
  m.tensors[static_cast<size_t>(bias)].weight_size = sizeof bias_values;
  m.weights = std::span<const uint8_t>(blob.data(), blob.size());
  m.inputs.push_back(binding(m, x, dynamic ? std::vector<format::DimRange>{{1, 2, 8}, {4, 4, 4}}
                                           : std::vector<format::DimRange>{}));
  m.outputs.push_back(binding(m, y));
  m.layers.push_back(layer("add0", "Add", {x, bias}, {sum}));
  m.layers.push_back(layer("relu0", "Relu", {sum}, {y}));
  m.memory_plan.offsets.assign(m.tensors.size(), format::MemoryPlan::kNoOffset);
  m.memory_plan.first_use.assign(m.tensors.size(), -1);
  m.memory_plan.last_use.assign(m.tensors.size(), -1);
  if (!dynamic) {
    m.memory_plan.is_static = true;
    m.memory_plan.offsets[static_cast<size_t>(sum)] = 0;
    m.memory_plan.arena_size = 64;
  }
  m.memory_plan.first_use[static_cast<size_t>(sum)] = 0;
  m.memory_plan.last_use[static_cast<size_t>(sum)] = 1;
  return format::write_engine(m);
}

inline std::vector<float> expected_add_relu(const std::vector<float>& x) {
  const float bias[4] = {-1.0f, 0.0f, 1.0f, 2.0f};
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = std::max(0.0f, x[i] + bias[i % 4]);
  return y;
}

inline std::vector<float> iota_values(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + 0.5f * static_cast<float>(i);
  return v;
}

inline std::string error_message(const std::function<void()>& body, ErrorCode* code = nullptr) {
  try {
    body();
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

}  // namespace kiln::testing
