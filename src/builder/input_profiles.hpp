// Applies BuilderConfig's input profiles to a graph's inputs: decides the allowed range of every
// dynamic dimension, and makes a dimension static where its range is a single value.
#pragma once

#include <vector>

#include "format/engine_model.hpp"
#include "ir/graph.hpp"
#include "kiln/builder.hpp"

namespace kiln::builder {

// One range per dimension of each graph input, in the order of graph.inputs.
using InputRanges = std::vector<std::vector<format::DimRange>>;

// Validates the profiles against the graph's inputs (each names an existing input, ranks match,
// min <= opt <= max, static dims are not contradicted) and rewrites input shapes where a dynamic
// dim's range is one value. Dynamic dims no profile covers get the config's default range. Then
// gives the dims left dynamic their symbols (ir::Graph::assign_input_symbols).
// Throws kInvalidArgument naming the input and dimension, or naming the input and its largest
// allowed shape when that shape's byte size does not fit in int64.
InputRanges apply_input_profiles(ir::Graph& graph, const BuilderConfig& config);

}  // namespace kiln::builder
