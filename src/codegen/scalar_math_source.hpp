// The text of ops/scalar_math.h, for the CUDA code generator to paste into the NVRTC source of each
// generated kernel (NVRTC sees no files). CMake writes the definition from the header at build
// time (cmake/embed_text.cmake), so the text always matches what the CPU and CUDA kernels compile.
#pragma once

#include <string_view>

namespace kiln::codegen {

// The whole header, byte for byte; it includes nothing when compiled by NVRTC.
std::string_view scalar_math_source();

}  // namespace kiln::codegen
