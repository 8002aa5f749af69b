// Helpers the data-dependent ops (NonZero, Unique, Compress, NonMaxSuppression) share between
// their op definitions (src/ops/data_dependent_ops.cpp) and their kernels.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "base/attributes.hpp"

namespace kiln::ops {

// Unique's `axis` attribute normalised into [0, rank), or nullopt when absent (the input is
// flattened). Throws kInvalidArgument naming the node when out of range.
std::optional<int64_t> unique_axis(const AttributeMap& attrs, int64_t rank, std::string_view node_name);

}  // namespace kiln::ops
