// The shape of the ai.onnx.preview.training optimizers' variadic inputs, shared by the op's infer
// function and the CPU kernel.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace kiln::ops {

struct OptimizerArity {
  size_t groups = 3;                         // inputs per optimized tensor (after R and T)
  std::array<const char*, 4> names = {};     // the groups' input names: X, G, then V and/or H
};

// Adagrad: X, G, H; Adam: X, G, V, H; Momentum (any other name): X, G, V.
OptimizerArity optimizer_arity(std::string_view op);

}  // namespace kiln::ops
