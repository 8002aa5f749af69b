#include "passes/pass_manager.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "base/error.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

bool log_passes() {
  const char* value = std::getenv("KILN_LOG_PASSES");
  return value != nullptr && std::string_view(value) == "1";
}

}  // namespace

PassManager& PassManager::add(std::string name, std::function<size_t(ir::Graph&)> run) {
  passes_.push_back(Pass{std::move(name), std::move(run)});
  return *this;
}

void PassManager::run(ir::Graph& graph) {
  const bool log = log_passes();
  for (const Pass& pass : passes_) {
    const auto start = std::chrono::steady_clock::now();
    const size_t changes = pass.run(graph);
    try {
      // Verifying is cheap and catches a pass that broke the graph but reported no change.
      if (changes > 0) {
        eliminate_dead_code(graph);
        infer_shapes(graph);
      }
      graph.verify();
    } catch (const Error& error) {
      fail(error.code(), "after pass '", pass.name, "': ", error.what());
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    records_.push_back(PassRecord{pass.name, changes, ms});
    if (log) std::fprintf(stderr, "kiln pass %-28s %6zu change(s) %9.2f ms\n", pass.name.c_str(), changes, ms);
  }
}

}  // namespace kiln::passes
