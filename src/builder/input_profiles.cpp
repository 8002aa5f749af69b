#include "builder/input_profiles.hpp"

#include <string>

#include "base/checked_math.hpp"
#include "base/error.hpp"

namespace kiln::builder {
namespace {

std::string input_names(const ir::Graph& graph) {
  std::string names;
  for (ir::ValueId id : graph.inputs) names += (names.empty() ? "" : ", ") + graph.value(id).name;
  return names.empty() ? "none" : names;
}

const InputProfile* find_profile(const BuilderConfig& config, const std::string& name) {
  for (const InputProfile& profile : config.profiles)
    if (profile.name == name) return &profile;
  return nullptr;
}

void check_profiles_name_inputs(const ir::Graph& graph, const BuilderConfig& config) {
  for (size_t i = 0; i < config.profiles.size(); ++i) {
    const std::string& name = config.profiles[i].name;
    for (size_t j = 0; j < i; ++j) {
      if (config.profiles[j].name == name)
        fail(ErrorCode::kInvalidArgument, "input '", name, "' has two profiles");
    }
    bool found = false;
    for (ir::ValueId id : graph.inputs) found = found || graph.value(id).name == name;
    if (!found) {
      fail(ErrorCode::kInvalidArgument, "profile for input '", name,
           "': the model has no such input (inputs: ", input_names(graph), ")");
    }
  }
}

void check_range(const std::string& what, const format::DimRange& range) {
  if (range.min < 0 || range.min > range.opt || range.opt > range.max) {
    fail(ErrorCode::kInvalidArgument, what, ": needs 0 <= min <= opt <= max, got min ", range.min,
         ", opt ", range.opt, ", max ", range.max);
  }
}

std::vector<format::DimRange> ranges_from_profile(const InputProfile& profile, const Shape& shape) {
  const std::string what = "profile for input '" + profile.name + "'";
  const std::pair<const char*, const Shape*> parts[] = {
      {"min", &profile.min}, {"opt", &profile.opt}, {"max", &profile.max}};
  for (const auto& [label, dims] : parts) {
    if (dims->size() != shape.size()) {
      fail(ErrorCode::kInvalidArgument, what, ": ", label, " has ", dims->size(),
           " dims, the input has ", shape.size(), " (shape ", shape_to_string(shape), ")");
    }
  }
  std::vector<format::DimRange> ranges(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    const format::DimRange range{profile.min[d], profile.opt[d], profile.max[d]};
    check_range(what + ", dim " + std::to_string(d), range);
    if (shape[d] != kDynamicDim && (range.min != shape[d] || range.max != shape[d])) {
      fail(ErrorCode::kInvalidArgument, what, ", dim ", d, ": the model fixes it at ", shape[d],
           " but the profile gives min ", range.min, ", opt ", range.opt, ", max ", range.max);
    }
    ranges[d] = range;
  }
  return ranges;
}

// Every size the runtime derives from an input is bounded by its largest allowed shape: that one
// must have a byte size (and strides) that fit in int64, or the engine could never be fed.
void check_max_shape_fits(const ir::Value& input, const std::vector<format::DimRange>& ranges) {
  Shape max_shape(ranges.size());
  for (size_t d = 0; d < ranges.size(); ++d) max_shape[d] = ranges[d].max;
  if (byte_size_no_overflow(max_shape, input.dtype)) return;
  fail(ErrorCode::kInvalidArgument, "input '", input.name, "': its largest allowed shape ",
       dtype_name(input.dtype), shape_to_string(max_shape),
       " is larger than 2^63 - 1 bytes; give a profile with smaller max dims");
}

}  // namespace

InputRanges apply_input_profiles(ir::Graph& graph, const BuilderConfig& config) {
  check_profiles_name_inputs(graph, config);
  const format::DimRange default_range{config.default_dynamic_min, config.default_dynamic_opt,
                                       config.default_dynamic_max};
  check_range("default dynamic dimension range", default_range);
  InputRanges all_ranges;
  all_ranges.reserve(graph.inputs.size());
  for (ir::ValueId id : graph.inputs) {
    ir::Value& input = graph.value(id);
    std::vector<format::DimRange> ranges;
    if (const InputProfile* profile = find_profile(config, input.name)) {
      ranges = ranges_from_profile(*profile, input.shape);
    } else {
      ranges.resize(input.shape.size());
      for (size_t d = 0; d < input.shape.size(); ++d) {
        const int64_t dim = input.shape[d];
        ranges[d] = dim == kDynamicDim ? default_range : format::DimRange{dim, dim, dim};
      }
    }
    for (size_t d = 0; d < ranges.size(); ++d) {
      if (input.shape[d] < kDynamicDim) {
        fail(ErrorCode::kInvalidArgument, "input '", input.name, "', dim ", d, ": invalid size ",
             input.shape[d]);
      }
      // A range of one value is a static dimension: it lets shape inference and folding do more.
      if (ranges[d].min == ranges[d].max) {
        input.shape[d] = ranges[d].min;
        ranges[d].opt = ranges[d].min;
      }
    }
    check_max_shape_fits(input, ranges);
    all_ranges.push_back(std::move(ranges));
  }
  graph.assign_input_symbols();
  return all_ranges;
}

}  // namespace kiln::builder
