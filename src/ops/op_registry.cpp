#include "ops/op_registry.hpp"

#include <algorithm>

#include "base/checked_math.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {

const ValueInfo& InferContext::input(size_t i) const {
  static const ValueInfo kAbsent{DType::kFloat32, {}, nullptr, false};
  return i < inputs_.size() ? inputs_[i] : kAbsent;
}

void InferContext::link_dim(size_t output, size_t dim, size_t input, size_t input_dim) {
  if (links_) links_->push_back(DimLink{DimLink::Kind::kEqual, output, dim, {DimRef{input, input_dim}}});
}

void InferContext::link_equal_dims(size_t output, size_t dim, std::vector<DimRef> sources) {
  if (links_ && !sources.empty()) links_->push_back(DimLink{DimLink::Kind::kEqual, output, dim, std::move(sources)});
}

void InferContext::link_broadcast_dims(size_t output, size_t dim, std::vector<DimRef> sources) {
  if (links_) links_->push_back(DimLink{DimLink::Kind::kBroadcast, output, dim, std::move(sources)});
}

void InferContext::link_same_shape(size_t output, size_t input) {
  if (!links_ || !has_input(input)) return;
  for (size_t d = 0; d < inputs_[input].shape.size(); ++d) link_dim(output, d, input, d);
}

void InferContext::link_broadcast(size_t output, size_t first, size_t end) {
  if (!links_) return;
  end = std::min(end, inputs_.size());
  size_t rank = 0;
  for (size_t i = first; i < end; ++i)
    if (inputs_[i].present) rank = std::max(rank, inputs_[i].shape.size());
  for (size_t d = 0; d < rank; ++d) {
    DimLink link{DimLink::Kind::kBroadcast, output, d, {}};
    for (size_t i = first; i < end; ++i) {
      const size_t in_rank = inputs_[i].present ? inputs_[i].shape.size() : 0;
      if (d + in_rank >= rank) link.sources.push_back(DimRef{i, d + in_rank - rank});
    }
    links_->push_back(std::move(link));
  }
}

void OpRegistry::add(OpDef def) {
  KILN_ASSERT(def.infer != nullptr, "op ", def.name, " has no infer function");
  std::string name = def.name;
  auto [it, inserted] = defs_.emplace(name, std::move(def));
  if (!inserted) fail(ErrorCode::kInternal, "op '", name, "' is registered twice");
}

const OpDef* OpRegistry::find(std::string_view name) const {
  auto it = defs_.find(std::string(name));
  return it == defs_.end() ? nullptr : &it->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  out.reserve(defs_.size());
  for (const auto& [name, def] : defs_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

const OpRegistry& op_registry() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_families(r, op_families());
    return r;
  }();
  return registry;
}

const OpDef* find_op(std::string_view name) {
  return op_registry().find(name);
}

namespace {

void check_output_sizes(const OpDef& def, std::string_view node_name,
                        const std::vector<ValueInfo>& outputs,
                        std::span<const std::string_view> output_names) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const ValueInfo& out = outputs[i];
    bool valid_dims = true;
    for (const int64_t d : out.shape) valid_dims = valid_dims && d >= kDynamicDim;
    if (valid_dims && static_dims_fit(out.shape, out.dtype)) continue;
    const std::string name = i < output_names.size() && !output_names[i].empty()
                                 ? detail::concat("output '", output_names[i], "'")
                                 : detail::concat("output ", i);
    fail(ErrorCode::kInvalidArgument, "node '", node_name, "' (", def.name, "): ", name,
         " would be ", dtype_name(out.dtype), shape_to_string(out.shape),
         valid_dims ? ", larger than 2^63 - 1 bytes" : ", which has a negative dimension");
  }
}

}  // namespace

namespace {
void run_infer(const OpDef& def, std::string_view node_name, const AttributeMap& attrs,
               std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs,
               std::span<const std::string_view> output_names, bool want_bounds, std::vector<DimLink>* links) {
  const auto n_in = static_cast<int>(inputs.size());
  const auto n_out = static_cast<int>(outputs.size());
  if (n_in < def.min_inputs || n_in > def.max_inputs) {
    fail(ErrorCode::kInvalidArgument, "node '", node_name, "' (", def.name, "): expected ",
         def.min_inputs, "..", def.max_inputs, " inputs, got ", n_in);
  }
  if (n_out < def.min_outputs || n_out > def.max_outputs) {
    fail(ErrorCode::kInvalidArgument, "node '", node_name, "' (", def.name, "): expected ",
         def.min_outputs, "..", def.max_outputs, " outputs, got ", n_out);
  }
  for (int i = 0; i < def.min_inputs; ++i) {
    if (!inputs[static_cast<size_t>(i)].present) {
      fail(ErrorCode::kInvalidArgument, "node '", node_name, "' (", def.name, "): required input ",
           i, " is missing");
    }
  }
  InferContext ctx(node_name, def.name, attrs, inputs, outputs, want_bounds, links);
  def.infer(ctx);
  check_output_sizes(def, node_name, outputs, output_names);
}
}  // namespace

void infer_node(const OpDef& def, std::string_view node_name, const AttributeMap& attrs,
                std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs,
                std::span<const std::string_view> output_names, std::vector<DimLink>* links) {
  run_infer(def, node_name, attrs, inputs, outputs, output_names, false, links);
}

void infer_node_bounds(const OpDef& def, std::string_view node_name, const AttributeMap& attrs,
                       std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs,
                       std::span<const std::string_view> output_names) {
  KILN_ASSERT(def.data_dependent_shapes, "infer_node_bounds on op ", def.name, ", whose sizes do not depend on data");
  run_infer(def, node_name, attrs, inputs, outputs, output_names, true, nullptr);
}

Shape broadcast_shapes(const InferContext& ctx, const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == 1) {
      out[i] = db;
    } else if (db == 1) {
      out[i] = da;
    } else if (da == kDynamicDim) {
      out[i] = db;  // db is static and != 1, so a must match it
    } else if (db == kDynamicDim || da == db) {
      out[i] = da;
    } else {
      ctx.fail("cannot broadcast shapes ", shape_to_string(a), " and ", shape_to_string(b));
    }
  }
  return out;
}

int64_t normalize_axis(const InferContext& ctx, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) {
    ctx.fail("axis ", axis, " is out of range for rank ", rank);
  }
  return axis < 0 ? axis + rank : axis;
}

}  // namespace kiln::ops
