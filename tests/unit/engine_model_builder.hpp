// Hand-made engine models for runtime tests: tensors, bindings and layers added one call each.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "format/engine_io.hpp"
#include "format/engine_model.hpp"

namespace kiln::testing {

// Appends a tensor and returns its index.
inline int32_t add_tensor(format::EngineModel& m, std::string name, DType dtype, Shape shape, format::TensorKind kind) {
  format::TensorDesc t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.kind = kind;
  m.tensors.push_back(t);
  return static_cast<int32_t>(m.tensors.size() - 1);
}

inline format::Layer layer(std::string name, std::string op, std::vector<int32_t> in, std::vector<int32_t> out) {
  format::Layer l;
  l.name = std::move(name);
  l.op = std::move(op);
  l.inputs = std::move(in);
  l.outputs = std::move(out);
  return l;
}

// The bytes of `m` with no recorded memory plan (no offsets, no live ranges): the runtime plans
// the arena itself when it loads the engine.
inline std::vector<uint8_t> write_unplanned_engine(format::EngineModel& m) {
  m.memory_plan.offsets.assign(m.tensors.size(), format::MemoryPlan::kNoOffset);
  m.memory_plan.first_use.assign(m.tensors.size(), -1);
  m.memory_plan.last_use.assign(m.tensors.size(), -1);
  return format::write_engine(m);
}

}  // namespace kiln::testing
