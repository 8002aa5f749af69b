// Helpers shared by the graph passes. Each pass lives in its own file and rewrites an ir::Graph in
// place; passes mark nodes `removed` and leave dropping them to Graph::compact() or DCE.
#pragma once

#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "ir/graph.hpp"

namespace kiln::passes {

bool is_graph_input(const ir::Graph& graph, ir::ValueId id);
bool is_graph_output(const ir::Graph& graph, ir::ValueId id);

// Indices of the live nodes that read `id` (a node reading it twice is listed once).
std::vector<int32_t> consumers_of(const ir::Graph& graph, ir::ValueId id);

// Makes every live node that reads `from` read `to` instead. Graph outputs are left alone.
void replace_uses(ir::Graph& graph, ir::ValueId from, ir::ValueId to);

// `base` when no value has that name, else `base` with the smallest numeric suffix that is free.
std::string unique_value_name(const ir::Graph& graph, const std::string& base);

// "node 'name' (Op)" for error messages.
std::string describe_node(const ir::Node& node);

// For passes that add nodes: `base` when `taken` lacks it, else `base_1`, `base_2`, ...; the name
// returned is added to `taken`.
std::string take_node_name(std::unordered_set<std::string>& taken, const std::string& base);

// Appends `node` to `out` writing `output`, or, when `output` is kNoValue, a new value named after
// the node with `dtype` (its shape comes from inference once the nodes are spliced in). Returns the
// output value.
ir::ValueId append_node(ir::Graph& graph, std::vector<ir::Node>& out, ir::Node node, ir::ValueId output,
                        DType dtype);

// The integers of `id` when it is an int32/int64 constant; nullopt when it is kNoValue, not
// constant or of another dtype.
std::optional<std::vector<int64_t>> constant_ints(const ir::Graph& graph, ir::ValueId id);

}  // namespace kiln::passes
