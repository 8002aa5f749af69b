// Einsum equations resolved against operand shapes, shared by the op's infer function and the
// builder's lowering (src/passes/einsum_lowering.cpp), which turns every Einsum into
// Transpose/Reshape/MatMul/ReduceSum so that no backend needs a kernel.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/types.hpp"

namespace kiln::ops {

// Labels are ids: a letter's ASCII code (so sorting letters gives numpy's implicit output order),
// or kEllipsisLabel + k for the k-th dimension covered by `...`, counted from the left of the
// widest ellipsis (narrower ones align to the right, numpy style).
inline constexpr int kEllipsisLabel = 256;

struct EinsumSpec {
  std::vector<std::vector<int>> operand_labels;  // one label per axis of each operand
  std::vector<int> output_labels;                // one label per output axis
  std::map<int, int64_t> sizes;                  // each label's size (kDynamicDim when unknown)
  // Per operand and axis: an ellipsis dim of size 1 that broadcasts against a larger (or
  // unknown) size of the same dim in the other operand. It contributes nothing but its 1.
  std::vector<std::vector<bool>> broadcast;
  // Whether some label appears twice in one operand (a diagonal).
  bool has_diagonal = false;
};

// Parses `equation` against the operand shapes and checks it; the errors (kInvalidArgument)
// start with `node` ("node 'name' (Einsum)") and name the equation.
EinsumSpec resolve_einsum(std::string_view node, std::string_view equation,
                          const std::vector<Shape>& operand_shapes);

// "i", "A" or "...[k]" for error messages.
std::string einsum_label_name(int label);

}  // namespace kiln::ops
