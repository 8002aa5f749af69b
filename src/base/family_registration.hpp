// Registries filled by op families. An op family is the file(s) that define a group of ops
// (src/ops/<family>_ops.cpp) or their kernels on one backend
// (src/backends/cpu/<family>_kernels.cpp, src/backends/cuda/<family>_kernels.{cpp,cu}); each
// defines one registration function, `void register_<family>_<ops|kernels>(<Registry>& registry)`.
// No hand-kept list names them: the build finds those definitions in the sources and generates each
// registry's table of families (cmake/generate_family_table.cmake, run by kiln_family_table() in
// CMakeLists.txt; the cuda table from src/backends/cuda only, inside libkiln_backend_cuda.so).
// Adding a family adds files and edits none. Registration is an explicit call from the registry's
// first use, never a static initialiser, so no family is lost when an object file is left out of a
// link.
#pragma once

#include <span>
#include <string_view>

#include "base/error.hpp"

namespace kiln {

template <typename Registry>
struct Family {
  std::string_view name;    // "det", from register_det_ops
  std::string_view source;  // the file defining it, from the repository root: "src/ops/det_ops.cpp"
  void (*register_into)(Registry& registry) = nullptr;
};

// Runs every family's registration into `registry`, in the table's order (sorted by name), which
// nothing may depend on: registries refuse a name registered twice, whatever the order. An error
// from a family (such as that duplicate) is rethrown with its code, naming the family and its file.
template <typename Registry>
void register_families(Registry& registry, std::span<const Family<Registry>> families) {
  for (const Family<Registry>& family : families) {
    try {
      family.register_into(registry);
    } catch (const Error& error) {
      fail(error.code(), "op family '", family.name, "' (", family.source, "): ", error.what());
    }
  }
}

}  // namespace kiln
