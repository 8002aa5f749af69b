// A structural check of CUDA cubins (ELF images) carried in engine files. The driver parses a cubin
// trusting its header tables, so the reader first makes sure they stay inside the bytes it has:
// engines are hostile input. It does not judge the code itself; the driver still may refuse it.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace kiln::format {

// "" when `image` is a little-endian ELF64 image for EM_CUDA whose program and section header
// tables, and every section and segment with file contents, lie inside `image`; otherwise what is
// wrong, e.g. "section 3 [4096, 4096 + 512) ends past the 2048-byte image".
std::string cubin_image_problem(std::span<const uint8_t> image);

}  // namespace kiln::format
