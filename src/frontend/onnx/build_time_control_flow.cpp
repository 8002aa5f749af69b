#include "frontend/onnx/build_time_control_flow.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "base/error.hpp"

namespace kiln::onnx {
namespace {

const proto::Attribute* find_attribute(const FlatNode& node, std::string_view name) {
  for (const FlatAttribute& attr : node.attributes) {
    if (attr.name == name) return attr.value;
  }
  return nullptr;
}

int64_t int_attribute(const FlatNode& node, std::string_view name, int64_t fallback) {
  const proto::Attribute* a = find_attribute(node, name);
  return a && a->type == proto::Attribute::kInt ? a->i : fallback;
}

// A per-input or per-output INTS attribute, `count` long (zeros when absent).
std::vector<int64_t> ints_attribute(const FlatNode& node, std::string_view name, size_t count) {
  const proto::Attribute* a = find_attribute(node, name);
  if (!a || a->type != proto::Attribute::kInts) return std::vector<int64_t>(count, 0);
  return a->ints;
}

bool element_is_true(const HostTensor& t) {
  switch (t.dtype) {
    case DType::kBool:
    case DType::kUInt8:
    case DType::kInt8:
      return t.bytes[0] != 0;
    case DType::kInt32:
      return *t.data<int32_t>() != 0;
    case DType::kInt64:
      return *t.data<int64_t>() != 0;
    default:
      return false;
  }
}

std::string op_label(const FlatNode& node) {
  return detail::concat("node '", node.name, "' (", node.op_type, ")");
}

}  // namespace

bool BuildTimeControlFlow::handles(const std::string& op_type, const std::string& domain) {
  if (!domain.empty()) return false;
  static const char* const kOps[] = {
      "If", "Loop", "Scan", "SequenceEmpty", "SequenceConstruct", "SequenceAt", "SequenceInsert",
      "SequenceErase", "SequenceLength", "ConcatFromSequence", "SplitToSequence", "Optional",
      "OptionalHasElement", "OptionalGetElement"};
  return std::find(std::begin(kOps), std::end(kOps), op_type) != std::end(kOps);
}

bool BuildTimeControlFlow::defines(const std::string& name) const {
  return sequences_.count(name) || optionals_.count(name);
}

std::string BuildTimeControlFlow::non_tensor_kind(const std::string& name) const {
  if (sequences_.count(name)) return "a sequence";
  if (optionals_.count(name)) return "an optional";
  return "";
}

template <typename... Parts>
void BuildTimeControlFlow::refuse(const FlatNode& node, Parts&&... parts) const {
  fail(ErrorCode::kUnsupported, host_.source(), ": ", op_label(node), ": ",
       std::forward<Parts>(parts)...);
}

template <typename... Parts>
void BuildTimeControlFlow::fail_corrupt(const FlatNode& node, Parts&&... parts) const {
  fail(ErrorCode::kCorruptFile, host_.source(), ": ", op_label(node), ": ",
       std::forward<Parts>(parts)...);
}

void BuildTimeControlFlow::resolve(const FlatNode& node) {
  if (node.op_type == "If") return resolve_if(node);
  if (node.op_type == "Loop") return resolve_loop(node);
  if (node.op_type == "Scan") return resolve_scan(node);
  if (node.op_type.rfind("Optional", 0) == 0) return resolve_optional_op(node);
  resolve_sequence_op(node);
}

std::string BuildTimeControlFlow::int_constant(const std::string& suggested, int64_t value,
                                               bool scalar) {
  auto t = std::make_shared<HostTensor>(DType::kInt64, scalar ? Shape{} : Shape{1});
  *t->data<int64_t>() = value;
  return host_.add_constant(suggested, std::move(t));
}

void BuildTimeControlFlow::alias(const std::string& out, const std::string& src,
                                 const std::string& node_name) {
  if (out.empty()) return;
  if (auto seq = sequences_.find(src); seq != sequences_.end()) {
    sequences_[out] = std::vector<std::string>(seq->second);
  } else if (auto opt = optionals_.find(src); opt != optionals_.end()) {
    optionals_[out] = std::optional<std::string>(opt->second);
  } else {
    host_.add_op(node_name + "/" + out, "Identity", {src}, {out});
  }
}

void BuildTimeControlFlow::stack(const std::vector<std::string>& parts, int64_t axis,
                                 const std::string& out, const std::string& node_name) {
  const std::string axes = int_constant(node_name + "/stack_axis", axis, /*scalar=*/false);
  std::vector<std::string> unsqueezed;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string name = parts.size() == 1 ? out : host_.flattener().unique_name(
                                                            detail::concat(out, "/part_", i));
    host_.add_op(detail::concat(node_name, "/unsqueeze_", out, "_", i), "Unsqueeze",
                 {parts[i], axes}, {name});
    unsqueezed.push_back(name);
  }
  if (parts.size() == 1) return;
  AttributeMap attrs;
  attrs.set("axis", Attribute::of_int(axis));
  host_.add_op(detail::concat(node_name, "/concat_", out), "Concat", unsqueezed, {out},
               std::move(attrs));
}

std::vector<int64_t> BuildTimeControlFlow::build_time_ints(const FlatNode& node,
                                                           const std::string& name,
                                                           std::string_view what) {
  if (defines(name)) refuse(node, what, " '", name, "' is ", non_tensor_kind(name), ", not a tensor");
  const ir::Value value = host_.evaluate(name);
  if (!value.constant) {
    refuse(node, what, " '", name,
           "' is only known at run time; kiln resolves this op at build time (its engines are static "
           "graphs) and needs it computable from constants and static shapes");
  }
  const HostTensor& t = *value.constant;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype) {
      case DType::kInt64:
        out.push_back(t.data<int64_t>()[i]);
        break;
      case DType::kInt32:
        out.push_back(t.data<int32_t>()[i]);
        break;
      default:
        fail_corrupt(node, what, " '", name, "' has dtype ", dtype_name(t.dtype),
                     "; expected int32 or int64");
    }
  }
  return out;
}

int64_t BuildTimeControlFlow::build_time_int(const FlatNode& node, const std::string& name,
                                             std::string_view what) {
  const std::vector<int64_t> values = build_time_ints(node, name, what);
  if (values.size() != 1) {
    fail_corrupt(node, what, " '", name, "' has ", values.size(), " elements; expected one");
  }
  return values[0];
}

// ---- If ----------------------------------------------------------------------------------------

void BuildTimeControlFlow::resolve_if(const FlatNode& node) {
  if (node.inputs.empty() || node.inputs[0].empty()) fail_corrupt(node, "the condition is missing");
  const proto::Attribute* then_branch = find_attribute(node, "then_branch");
  const proto::Attribute* else_branch = find_attribute(node, "else_branch");
  if (!then_branch || !then_branch->g || !else_branch || !else_branch->g) {
    fail_corrupt(node, "needs graph attributes then_branch and else_branch");
  }
  const std::string& cond = node.inputs[0];
  if (defines(cond)) refuse(node, "the condition '", cond, "' is ", non_tensor_kind(cond));
  const ir::Value value = host_.evaluate(cond);
  if (!value.constant) {
    refuse(node, "the condition '", cond,
           "' is only known at run time; kiln resolves If at build time (its engines are static "
           "graphs, without branches) and needs a condition computable from constants and static "
           "shapes");
  }
  if (value.constant->numel() != 1) {
    fail_corrupt(node, "the condition '", cond, "' has ", value.constant->numel(),
                 " elements; expected one");
  }
  const bool take_then = element_is_true(*value.constant);
  const proto::Graph& branch = take_then ? *then_branch->g : *else_branch->g;
  const InlinedSubgraph body = host_.flattener().inline_subgraph(
      branch, node, {}, node.name + (take_then ? "/then/" : "/else/"));
  if (body.outputs.size() < node.outputs.size()) {
    fail_corrupt(node, "has ", node.outputs.size(), " outputs but its ",
                 take_then ? "then" : "else", " branch returns ", body.outputs.size());
  }
  host_.add_subgraph(body);
  for (size_t k = 0; k < node.outputs.size(); ++k) alias(node.outputs[k], body.outputs[k], node.name);
}

// ---- Loop --------------------------------------------------------------------------------------

void BuildTimeControlFlow::resolve_loop(const FlatNode& node) {
  const proto::Attribute* body_attr = find_attribute(node, "body");
  if (!body_attr || !body_attr->g) fail_corrupt(node, "needs a graph attribute 'body'");
  const proto::Graph& body = *body_attr->g;
  if (node.inputs.size() < 2) fail_corrupt(node, "needs inputs M and cond (either may be empty)");
  const size_t carried_count = node.inputs.size() - 2;
  if (body.outputs.size() < 1 + carried_count || body.inputs.size() != 2 + carried_count) {
    fail_corrupt(node, "its body has ", body.inputs.size(), " inputs and ", body.outputs.size(),
                 " outputs; with ", carried_count, " loop-carried values it needs ",
                 2 + carried_count, " inputs and at least ", 1 + carried_count, " outputs");
  }
  const size_t scan_count = body.outputs.size() - 1 - carried_count;

  std::optional<int64_t> trip_count;
  if (!node.inputs[0].empty()) trip_count = build_time_int(node, node.inputs[0], "the trip count M");
  bool running = true;
  std::string cond_name = node.inputs[1];
  if (!cond_name.empty()) {
    const ir::Value cond = host_.evaluate(cond_name);
    if (!cond.constant) {
      refuse(node, "the loop condition '", cond_name,
             "' is only known at run time; kiln unrolls Loop at build time and needs its trip count "
             "and condition computable from constants and static shapes");
    }
    running = element_is_true(*cond.constant);
  } else {
    auto t = std::make_shared<HostTensor>(DType::kBool, Shape{});
    t->bytes[0] = 1;
    cond_name = host_.add_constant(node.name + "/cond", std::move(t));
  }
  if (!trip_count && !running) trip_count = 0;
  if (trip_count && *trip_count > kMaxUnrolledIterations) {
    refuse(node, "the trip count is ", *trip_count, "; kiln unrolls Loop at build time and stops at ",
           kMaxUnrolledIterations, " iterations");
  }

  std::vector<std::string> carried(node.inputs.begin() + 2, node.inputs.end());
  std::vector<std::vector<std::string>> scans(scan_count);
  int64_t iteration = 0;
  for (; running && (!trip_count || iteration < *trip_count); ++iteration) {
    if (iteration >= kMaxUnrolledIterations) {
      refuse(node, "the loop runs more than ", kMaxUnrolledIterations,
             " iterations (its condition stays true); kiln unrolls Loop at build time and stops "
             "there");
    }
    std::vector<std::string> inputs;
    inputs.push_back(int_constant(detail::concat(node.name, "/iteration_", iteration), iteration));
    inputs.push_back(cond_name);
    inputs.insert(inputs.end(), carried.begin(), carried.end());
    const InlinedSubgraph unrolled = host_.flattener().inline_subgraph(
        body, node, inputs, detail::concat(node.name, "/", iteration, "/"));
    host_.add_subgraph(unrolled);
    cond_name = unrolled.outputs[0];
    carried.assign(unrolled.outputs.begin() + 1, unrolled.outputs.begin() + 1 + carried_count);
    for (size_t k = 0; k < scan_count; ++k) {
      const std::string& part = unrolled.outputs[1 + carried_count + k];
      if (defines(part)) {
        refuse(node, "scan output ", k, " is ", non_tensor_kind(part),
               "; kiln stacks tensor scan outputs only");
      }
      scans[k].push_back(part);
    }
    // The condition decides only whether another iteration runs.
    if (trip_count && iteration + 1 >= *trip_count) continue;
    if (defines(cond_name)) refuse(node, "the body's condition output is not a tensor");
    const ir::Value cond = host_.evaluate(cond_name);
    if (!cond.constant) {
      refuse(node, "the loop condition after iteration ", iteration, " ('", cond_name,
             "') is only known at run time; kiln unrolls Loop at build time and needs it computable "
             "from constants and static shapes");
    }
    running = element_is_true(*cond.constant);
  }
  for (size_t k = 0; k < carried_count && k < node.outputs.size(); ++k) {
    alias(node.outputs[k], carried[k], node.name);
  }
  for (size_t k = 0; k < scan_count && carried_count + k < node.outputs.size(); ++k) {
    const std::string& out = node.outputs[carried_count + k];
    if (out.empty()) continue;
    if (scans[k].empty()) {
      refuse(node, "the loop runs no iteration, so scan output '", out,
             "' would be empty with a shape kiln cannot tell at build time");
    }
    stack(scans[k], 0, out, node.name);
  }
}

// ---- Scan --------------------------------------------------------------------------------------

BuildTimeControlFlow::ScanResult BuildTimeControlFlow::unroll_scan(
    const FlatNode& node, const proto::Graph& body, const std::vector<std::string>& states,
    const std::vector<std::string>& scan_inputs, const std::vector<int64_t>& input_axes,
    const std::vector<int64_t>& input_directions, const std::vector<int64_t>& output_axes,
    const std::vector<int64_t>& output_directions, const std::string& prefix) {
  if (body.inputs.size() != states.size() + scan_inputs.size() || body.outputs.size() < states.size()) {
    fail_corrupt(node, "its body has ", body.inputs.size(), " inputs and ", body.outputs.size(),
                 " outputs; with ", states.size(), " states and ", scan_inputs.size(),
                 " scan inputs it needs ", states.size() + scan_inputs.size(), " inputs");
  }
  const size_t scan_output_count = body.outputs.size() - states.size();
  if (input_axes.size() != scan_inputs.size() || input_directions.size() != scan_inputs.size() ||
      output_axes.size() != scan_output_count || output_directions.size() != scan_output_count) {
    fail_corrupt(node, "scan_input_axes/directions need one entry per scan input (",
                 scan_inputs.size(), ") and scan_output_axes/directions one per scan output (",
                 scan_output_count, ")");
  }
  // The static length of every scan input along its axis; they must agree.
  int64_t length = -1;
  std::vector<int64_t> axes(scan_inputs.size());
  for (size_t j = 0; j < scan_inputs.size(); ++j) {
    if (defines(scan_inputs[j])) refuse(node, "scan input '", scan_inputs[j], "' is not a tensor");
    const ir::Value value = host_.evaluate(scan_inputs[j]);
    const auto rank = static_cast<int64_t>(value.shape.size());
    int64_t axis = input_axes[j] < 0 ? input_axes[j] + rank : input_axes[j];
    if (axis < 0 || axis >= rank) {
      fail_corrupt(node, "scan axis ", input_axes[j], " is out of range for input '",
                   scan_inputs[j], "' of rank ", rank);
    }
    axes[j] = axis;
    const int64_t dim = value.shape[static_cast<size_t>(axis)];
    if (dim < 0) {
      refuse(node, "scan input '", scan_inputs[j], "' has a run-time length along axis ", axis,
             "; kiln unrolls Scan at build time and needs a static length");
    }
    if (length >= 0 && dim != length) {
      fail_corrupt(node, "scan inputs have lengths ", length, " and ", dim, " along their axes");
    }
    length = dim;
  }
  if (length > kMaxUnrolledIterations) {
    refuse(node, "the scan runs ", length, " iterations; kiln unrolls Scan at build time and stops at ",
           kMaxUnrolledIterations);
  }
  if (length <= 0) refuse(node, "the scan runs no iteration; kiln cannot tell its outputs' shapes");

  ScanResult result;
  result.states = states;
  std::vector<std::vector<std::string>> parts(scan_output_count);
  for (int64_t t = 0; t < length; ++t) {
    std::vector<std::string> inputs = result.states;
    for (size_t j = 0; j < scan_inputs.size(); ++j) {
      const int64_t index = input_directions[j] == 1 ? length - 1 - t : t;
      const std::string slice =
          host_.flattener().unique_name(detail::concat(prefix, "slice_", j, "_", index));
      AttributeMap attrs;
      attrs.set("axis", Attribute::of_int(axes[j]));
      host_.add_op(slice, "Gather", {scan_inputs[j], int_constant(slice + "/index", index)}, {slice},
                   std::move(attrs));
      inputs.push_back(slice);
    }
    const InlinedSubgraph unrolled =
        host_.flattener().inline_subgraph(body, node, inputs, detail::concat(prefix, t, "/"));
    host_.add_subgraph(unrolled);
    result.states.assign(unrolled.outputs.begin(), unrolled.outputs.begin() + states.size());
    for (size_t k = 0; k < scan_output_count; ++k) {
      const std::string& part = unrolled.outputs[states.size() + k];
      if (defines(part)) refuse(node, "scan output ", k, " is not a tensor");
      parts[k].push_back(part);
    }
  }
  for (size_t k = 0; k < scan_output_count; ++k) {
    if (output_directions[k] == 1) std::reverse(parts[k].begin(), parts[k].end());
    const ir::Value first = host_.evaluate(parts[k][0]);
    const auto rank = static_cast<int64_t>(first.shape.size()) + 1;
    const int64_t axis = output_axes[k] < 0 ? output_axes[k] + rank : output_axes[k];
    if (axis < 0 || axis >= rank) {
      fail_corrupt(node, "scan output axis ", output_axes[k], " is out of range for rank ", rank);
    }
    const std::string out = host_.flattener().unique_name(detail::concat(prefix, "scan_output_", k));
    stack(parts[k], axis, out, node.name);
    result.scan_outputs.push_back(out);
  }
  return result;
}

void BuildTimeControlFlow::resolve_scan(const FlatNode& node) {
  const proto::Attribute* body_attr = find_attribute(node, "body");
  if (!body_attr || !body_attr->g) fail_corrupt(node, "needs a graph attribute 'body'");
  const proto::Graph& body = *body_attr->g;
  const int64_t scan_input_count = int_attribute(node, "num_scan_inputs", -1);
  // Opset 8's Scan takes an optional sequence_lens first and runs over a batch axis 0.
  const bool batched = node.opset < 9;
  const size_t first = batched ? 1 : 0;
  if (scan_input_count < 1 || static_cast<size_t>(scan_input_count) + first > node.inputs.size()) {
    fail_corrupt(node, "num_scan_inputs is ", scan_input_count, " with ", node.inputs.size(),
                 " inputs");
  }
  const size_t state_count = node.inputs.size() - first - static_cast<size_t>(scan_input_count);
  const std::vector<std::string> states(node.inputs.begin() + static_cast<std::ptrdiff_t>(first),
                                        node.inputs.begin() + static_cast<std::ptrdiff_t>(first + state_count));
  const std::vector<std::string> scan_inputs(
      node.inputs.begin() + static_cast<std::ptrdiff_t>(first + state_count), node.inputs.end());
  const size_t m = scan_inputs.size();
  const size_t k_count = body.outputs.size() >= state_count ? body.outputs.size() - state_count : 0;

  if (!batched) {
    const ScanResult result = unroll_scan(
        node, body, states, scan_inputs, ints_attribute(node, "scan_input_axes", m),
        ints_attribute(node, "scan_input_directions", m), ints_attribute(node, "scan_output_axes", k_count),
        ints_attribute(node, "scan_output_directions", k_count), node.name + "/");
    for (size_t i = 0; i < node.outputs.size() && i < state_count + k_count; ++i) {
      alias(node.outputs[i], i < state_count ? result.states[i] : result.scan_outputs[i - state_count],
            node.name);
    }
    return;
  }

  // Opset 8: every batch entry b scans x[b] along (what was) axis 1 from state[b].
  const ir::Value first_input = host_.evaluate(scan_inputs[0]);
  if (first_input.shape.size() < 2 || first_input.shape[0] < 0) {
    refuse(node, "scan input '", scan_inputs[0],
           "' needs a static batch dimension (axis 0) and a scan axis 1");
  }
  const int64_t batch = first_input.shape[0];
  if (!node.inputs[0].empty()) {
    const int64_t length = first_input.shape[1];
    for (int64_t len : build_time_ints(node, node.inputs[0], "sequence_lens")) {
      if (len != length) {
        refuse(node, "sequence_lens holds ", len, " but the scan length is ", length,
               "; kiln unrolls Scan over full sequences only");
      }
    }
  }
  if (batch > kMaxUnrolledIterations) refuse(node, "the batch of ", batch, " is too large to unroll");
  std::vector<std::vector<std::string>> per_output(state_count + k_count);
  for (int64_t b = 0; b < batch; ++b) {
    const std::string index = int_constant(detail::concat(node.name, "/batch_", b), b);
    AttributeMap axis0;
    axis0.set("axis", Attribute::of_int(0));
    const auto take = [&](const std::string& value) {
      const std::string name = host_.flattener().unique_name(detail::concat(node.name, "/", value, "_", b));
      host_.add_op(name, "Gather", {value, index}, {name}, axis0);
      return name;
    };
    std::vector<std::string> batch_states, batch_inputs;
    for (const std::string& s : states) batch_states.push_back(take(s));
    for (const std::string& x : scan_inputs) batch_inputs.push_back(take(x));
    const ScanResult result = unroll_scan(
        node, body, batch_states, batch_inputs, std::vector<int64_t>(m, 0),
        ints_attribute(node, "directions", m), std::vector<int64_t>(k_count, 0),
        std::vector<int64_t>(k_count, 0), detail::concat(node.name, "/batch_", b, "/"));
    for (size_t i = 0; i < state_count; ++i) per_output[i].push_back(result.states[i]);
    for (size_t k = 0; k < k_count; ++k) per_output[state_count + k].push_back(result.scan_outputs[k]);
  }
  for (size_t i = 0; i < node.outputs.size() && i < per_output.size(); ++i) {
    if (!node.outputs[i].empty()) stack(per_output[i], 0, node.outputs[i], node.name);
  }
}

// ---- Sequences ---------------------------------------------------------------------------------

const std::vector<std::string>& BuildTimeControlFlow::sequence(const FlatNode& node, size_t input) {
  if (input >= node.inputs.size() || node.inputs[input].empty()) {
    fail_corrupt(node, "input ", input, " (a sequence) is missing");
  }
  auto it = sequences_.find(node.inputs[input]);
  if (it == sequences_.end()) {
    fail_corrupt(node, "input '", node.inputs[input], "' is not a sequence");
  }
  return it->second;
}

void BuildTimeControlFlow::resolve_sequence_op(const FlatNode& node) {
  const std::string& op = node.op_type;
  if (node.outputs.empty() || node.outputs[0].empty()) fail_corrupt(node, "has no output");
  const std::string& out = node.outputs[0];
  // A position input: default `fallback`, negative counts from the back, within [-n, limit).
  const auto position = [&](size_t input, int64_t n, int64_t limit, int64_t fallback) {
    if (input >= node.inputs.size() || node.inputs[input].empty()) return fallback;
    int64_t pos = build_time_int(node, node.inputs[input], "the position");
    if (pos < -n || pos >= limit) {
      refuse(node, "position ", pos, " is out of range for a sequence of ", n, " tensors");
    }
    return pos < 0 ? pos + n : pos;
  };
  if (op == "SequenceEmpty") {
    sequences_[out] = {};
  } else if (op == "SequenceConstruct") {
    for (const std::string& in : node.inputs) {
      if (in.empty() || defines(in)) fail_corrupt(node, "every input must be a tensor");
    }
    sequences_[out] = node.inputs;
  } else if (op == "SequenceInsert") {
    std::vector<std::string> items = sequence(node, 0);
    if (node.inputs.size() < 2 || node.inputs[1].empty() || defines(node.inputs[1])) {
      fail_corrupt(node, "needs a tensor to insert");
    }
    const auto n = static_cast<int64_t>(items.size());
    const int64_t pos = position(2, n, n + 1, n);
    items.insert(items.begin() + pos, node.inputs[1]);
    sequences_[out] = std::move(items);
  } else if (op == "SequenceErase") {
    std::vector<std::string> items = sequence(node, 0);
    const auto n = static_cast<int64_t>(items.size());
    if (n == 0) refuse(node, "erases from an empty sequence");
    const int64_t pos = position(1, n, n, n - 1);
    items.erase(items.begin() + pos);
    sequences_[out] = std::move(items);
  } else if (op == "SequenceAt") {
    const std::vector<std::string> items = sequence(node, 0);
    const auto n = static_cast<int64_t>(items.size());
    if (node.inputs.size() < 2 || node.inputs[1].empty()) fail_corrupt(node, "needs a position");
    alias(out, items[static_cast<size_t>(position(1, n, n, 0))], node.name);
  } else if (op == "SequenceLength") {
    const auto n = static_cast<int64_t>(sequence(node, 0).size());
    alias(out, int_constant(out + "/length", n), node.name);
  } else if (op == "ConcatFromSequence") {
    const std::vector<std::string> items = sequence(node, 0);
    if (items.empty()) refuse(node, "concatenates an empty sequence; kiln cannot tell its shape");
    const proto::Attribute* axis_attr = find_attribute(node, "axis");
    if (!axis_attr) fail_corrupt(node, "needs the attribute 'axis'");
    const int64_t axis = axis_attr->i;
    if (int_attribute(node, "new_axis", 0) != 0) {
      stack(items, axis, out, node.name);
    } else {
      AttributeMap attrs;
      attrs.set("axis", Attribute::of_int(axis));
      host_.add_op(node.name, "Concat", items, {out}, std::move(attrs));
    }
  } else if (op == "SplitToSequence") {
    if (node.inputs.empty() || node.inputs[0].empty()) fail_corrupt(node, "needs an input");
    const std::string& input = node.inputs[0];
    const ir::Value value = host_.evaluate(input);
    const auto rank = static_cast<int64_t>(value.shape.size());
    int64_t axis = int_attribute(node, "axis", 0);
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) fail_corrupt(node, "axis is out of range for rank ", rank);
    const int64_t length = value.shape[static_cast<size_t>(axis)];
    if (length < 0) {
      refuse(node, "input '", input, "' has a run-time length along axis ", axis,
             "; kiln needs a static number of pieces to keep the sequence at build time");
    }
    std::vector<int64_t> sizes;
    const bool has_split = node.inputs.size() > 1 && !node.inputs[1].empty();
    bool squeeze = false;
    if (!has_split) {
      sizes.assign(static_cast<size_t>(length), 1);
      squeeze = int_attribute(node, "keepdims", 1) == 0;
    } else {
      const ir::Value split = host_.evaluate(node.inputs[1]);
      const std::vector<int64_t> given = build_time_ints(node, node.inputs[1], "split");
      if (split.shape.empty()) {
        if (given[0] <= 0) refuse(node, "split size ", given[0], " is not positive");
        for (int64_t at = 0; at < length; at += given[0]) sizes.push_back(std::min(given[0], length - at));
      } else {
        sizes = given;
      }
    }
    if (static_cast<int64_t>(sizes.size()) > kMaxUnrolledIterations) {
      refuse(node, "splits into ", sizes.size(), " tensors; kiln stops at ", kMaxUnrolledIterations);
    }
    std::vector<std::string> pieces;
    for (size_t i = 0; i < sizes.size(); ++i) {
      pieces.push_back(host_.flattener().unique_name(detail::concat(out, "/", i)));
    }
    if (!pieces.empty()) {
      std::vector<std::string> split_outputs = pieces;
      if (squeeze) {
        for (std::string& p : split_outputs) p = host_.flattener().unique_name(p + "/unsqueezed");
      }
      auto sizes_tensor = std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(sizes.size())});
      std::memcpy(sizes_tensor->bytes.data(), sizes.data(), sizes_tensor->bytes.size());
      AttributeMap attrs;
      attrs.set("axis", Attribute::of_int(axis));
      host_.add_op(node.name, "Split", {input, host_.add_constant(out + "/split", std::move(sizes_tensor))},
                   split_outputs, std::move(attrs));
      if (squeeze) {
        const std::string axes = int_constant(out + "/axes", axis, /*scalar=*/false);
        for (size_t i = 0; i < pieces.size(); ++i) {
          host_.add_op(detail::concat(node.name, "/squeeze_", i), "Squeeze", {split_outputs[i], axes},
                       {pieces[i]});
        }
      }
    }
    sequences_[out] = std::move(pieces);
  } else {
    fail(ErrorCode::kInternal, "sequence op ", op, " reached resolve_sequence_op");
  }
}

// ---- Optionals ---------------------------------------------------------------------------------

void BuildTimeControlFlow::resolve_optional_op(const FlatNode& node) {
  if (node.outputs.empty() || node.outputs[0].empty()) fail_corrupt(node, "has no output");
  const std::string& out = node.outputs[0];
  const std::string input = node.inputs.empty() ? std::string() : node.inputs[0];
  if (node.op_type == "Optional") {
    optionals_[out] = input.empty() ? std::nullopt : std::optional<std::string>(input);
    return;
  }
  // The element an input holds: an optional's (maybe none), else the input itself.
  std::optional<std::string> element;
  if (auto it = optionals_.find(input); it != optionals_.end()) {
    element = it->second;
  } else if (!input.empty()) {
    element = input;
  }
  if (node.op_type == "OptionalHasElement") {
    auto t = std::make_shared<HostTensor>(DType::kBool, Shape{});
    t->bytes[0] = element ? 1 : 0;
    alias(out, host_.add_constant(out + "/value", std::move(t)), node.name);
  } else {  // OptionalGetElement
    if (!element) refuse(node, "its input '", input, "' is an empty optional");
    alias(out, *element, node.name);
  }
}

}  // namespace kiln::onnx
