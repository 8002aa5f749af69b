// Minimal .npy (NumPy format 1.0/2.0/3.0) reading and writing for the example: little-endian,
// C-order arrays of the dtypes kiln supports. bfloat16 travels as uint16 ('<u2'), as in the CLI.
#pragma once

#include <kiln/runtime.hpp>

#include <string>

namespace example {

// Reads `path` into a tensor; throws std::runtime_error naming the file and the problem.
kiln::Tensor read_npy(const std::string& path, kiln::DType expected);
void write_npy(const std::string& path, const kiln::Tensor& tensor);

}  // namespace example
