// Fusion grouping: the builder's one generic fusion for GPU targets. Pointwise ops (every op of
// the scalar table, Cast, Where, Clip), reductions (Reduce*, Softmax, LogSoftmax,
// LayerNormalization, GlobalAveragePool/GlobalMaxPool) and their pointwise prologues and
// epilogues are merged into maximal groups that become FusedGroup nodes (ops/fused_group.hpp),
// each run by one generated kernel. A merge is made when the merged group still plans as one
// kernel (codegen::plan_group: one iteration space, reductions over the same axes, supported
// dtypes), keeps the graph acyclic, and duplicates no node: a value used outside the group
// becomes an extra output instead of being recomputed. Values broadcast inside a pointwise group
// (a per-channel gate applied to a whole feature map) are recomputed per element, which costs
// arithmetic, not memory traffic.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace kiln::passes {

// What the pass decided, for `kiln build --explain`.
struct FusionDecision {
  std::string node;    // a node's name
  std::string op;
  std::string group;   // the FusedGroup it joined ("" when it joined none)
  std::string reason;  // why it joined no group, or what stopped its group from growing
};

struct FusionReport {
  int groups = 0;
  int members = 0;
  std::vector<FusionDecision> decisions;  // one per node considered
};

// Needs: shapes inferred. Replaces groups by FusedGroup nodes (one per group, single nodes
// included, so every pointwise op runs a generated kernel), keeps value ids, re-sorts the nodes
// topologically. Returns the number of groups formed.
int form_fusion_groups(ir::Graph& graph, FusionReport* report = nullptr);

}  // namespace kiln::passes
