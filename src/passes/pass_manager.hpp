// One interface for the builder's graph passes and a manager that runs them in order. After every
// pass that changed the graph, the manager drops dead nodes, re-infers every shape and verifies
// the graph, so no pass has to remember to, and a pass that breaks the graph is named at once.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace kiln::passes {

struct Pass {
  std::string name;
  // Rewrites the graph in place; returns how many rewrites it made (0: the graph is unchanged).
  std::function<size_t(ir::Graph&)> run;
};

struct PassRecord {
  std::string name;
  size_t changes = 0;
  double milliseconds = 0.0;
};

class PassManager {
 public:
  PassManager& add(std::string name, std::function<size_t(ir::Graph&)> run);

  // Runs every pass in order. Throws what a pass throws; when the graph no longer infers or
  // verifies after a pass, the error (same code) names that pass. KILN_LOG_PASSES=1 prints each pass's
  // changes and time to stderr.
  void run(ir::Graph& graph);

  const std::vector<PassRecord>& records() const { return records_; }

 private:
  std::vector<Pass> passes_;
  std::vector<PassRecord> records_;
};

}  // namespace kiln::passes
