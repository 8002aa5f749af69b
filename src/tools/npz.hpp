// Reading numpy .npz archives (np.savez): a zip file holding one .npy file per array.
#pragma once

#include <map>
#include <string>

#include "kiln/runtime.hpp"

namespace kiln::tools {

// The arrays of the .npz file at `path`, by name (the member's name without ".npy"). Members
// must be stored uncompressed, as np.savez writes them; np.savez_compressed archives fail with
// kUnsupported saying so. Throws kNotFound/kIoError naming the path, kCorruptFile for a malformed
// archive, and what parse_npy throws for a malformed member.
std::map<std::string, Tensor> read_npz(const std::string& path);

}  // namespace kiln::tools
