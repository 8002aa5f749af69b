// Einsum: op definition (shape and dtype inference). The builder lowers every Einsum to
// Transpose/Reshape/MatMul/ReduceSum (src/passes/einsum_lowering.cpp), so no backend has a kernel.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ops/einsum.hpp"
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

constexpr int kEllipsisToken = -1;  // where `...` stands in a parsed term

struct ParsedEquation {
  std::vector<std::vector<int>> inputs;  // letters as ASCII codes, kEllipsisToken for `...`
  std::vector<int> output;
  bool explicit_output = false;
};

bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

class EquationParser {
 public:
  EquationParser(std::string_view node, std::string_view equation)
      : node_(node), equation_(equation) {}

  template <typename... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    kiln::fail(ErrorCode::kInvalidArgument, node_, ": equation \"", equation_, "\" ",
               std::forward<Parts>(parts)...);
  }

  ParsedEquation parse() const {
    std::string compact;
    for (char c : equation_) {
      if (c != ' ') compact.push_back(c);
    }
    if (compact.empty()) fail("is empty");
    ParsedEquation parsed;
    const size_t arrow = compact.find("->");
    std::string inputs = compact.substr(0, arrow);
    if (arrow != std::string::npos) {
      parsed.explicit_output = true;
      const std::string output = compact.substr(arrow + 2);
      if (output.find(',') != std::string::npos) fail("has ',' in its output term");
      parsed.output = parse_term(output, "the output term");
    }
    size_t begin = 0;
    for (;;) {
      const size_t comma = inputs.find(',', begin);
      const std::string term = inputs.substr(begin, comma - begin);
      parsed.inputs.push_back(
          parse_term(term, "input term " + std::to_string(parsed.inputs.size())));
      if (comma == std::string::npos) break;
      begin = comma + 1;
    }
    return parsed;
  }

 private:
  std::vector<int> parse_term(const std::string& term, const std::string& what) const {
    std::vector<int> tokens;
    bool ellipsis = false;
    for (size_t i = 0; i < term.size(); ++i) {
      const char c = term[i];
      if (is_letter(c)) {
        tokens.push_back(static_cast<unsigned char>(c));
      } else if (c == '.') {
        if (term.compare(i, 3, "...") != 0)
          fail("has a '.' in ", what, " that is not part of '...'");
        if (ellipsis) fail("has more than one '...' in ", what);
        ellipsis = true;
        tokens.push_back(kEllipsisToken);
        i += 2;
      } else {
        fail("has the character '", std::string(1, c), "' in ", what,
             " (allowed: letters, ',', '...', one '->')");
      }
    }
    return tokens;
  }

  std::string_view node_;
  std::string_view equation_;
};

}  // namespace

std::string einsum_label_name(int label) {
  if (label >= kEllipsisLabel) return "...[" + std::to_string(label - kEllipsisLabel) + "]";
  return std::string(1, static_cast<char>(label));
}

EinsumSpec resolve_einsum(std::string_view node, std::string_view equation,
                          const std::vector<Shape>& operand_shapes) {
  const EquationParser parser(node, equation);
  const ParsedEquation parsed = parser.parse();
  if (parsed.inputs.size() != operand_shapes.size()) {
    parser.fail("has ", parsed.inputs.size(), " input term(s) but the node has ",
                operand_shapes.size(), " input(s)");
  }

  // Ellipsis widths: what each operand's rank leaves after its letters.
  std::vector<int64_t> ellipsis_rank(operand_shapes.size(), 0);
  int64_t widest = 0;
  for (size_t o = 0; o < parsed.inputs.size(); ++o) {
    const std::vector<int>& term = parsed.inputs[o];
    const bool has_ellipsis = std::count(term.begin(), term.end(), kEllipsisToken) > 0;
    const int64_t letters = static_cast<int64_t>(term.size()) - (has_ellipsis ? 1 : 0);
    const int64_t rank = static_cast<int64_t>(operand_shapes[o].size());
    if (has_ellipsis ? letters > rank : letters != rank) {
      parser.fail("gives input ", o, " ", letters, " label(s)", has_ellipsis ? " and '...'" : "",
                  " but it has rank ", rank, " (shape ", shape_to_string(operand_shapes[o]), ")");
    }
    ellipsis_rank[o] = has_ellipsis ? rank - letters : 0;
    widest = std::max(widest, ellipsis_rank[o]);
  }

  EinsumSpec spec;
  std::map<int, int> occurrences;  // label -> count over all inputs
  for (size_t o = 0; o < parsed.inputs.size(); ++o) {
    std::vector<int> labels;
    for (int token : parsed.inputs[o]) {
      if (token != kEllipsisToken) {
        labels.push_back(token);
        continue;
      }
      for (int64_t j = 0; j < ellipsis_rank[o]; ++j) {
        labels.push_back(kEllipsisLabel + static_cast<int>(widest - ellipsis_rank[o] + j));
      }
    }
    const std::set<int> distinct(labels.begin(), labels.end());
    if (distinct.size() != labels.size()) spec.has_diagonal = true;
    for (int label : labels) ++occurrences[label];
    spec.operand_labels.push_back(std::move(labels));
  }

  if (parsed.explicit_output) {
    // numpy and ONNX Runtime refuse to sum ellipsis dims away.
    const bool output_ellipsis =
        std::count(parsed.output.begin(), parsed.output.end(), kEllipsisToken) > 0;
    if (widest > 0 && !output_ellipsis) {
      parser.fail("has '...' standing for ", widest,
                  " dimension(s) in an input term but not in its output term");
    }
    std::set<int> seen;
    for (int token : parsed.output) {
      if (token == kEllipsisToken) {
        for (int64_t j = 0; j < widest; ++j)
          spec.output_labels.push_back(kEllipsisLabel + static_cast<int>(j));
        continue;
      }
      if (!seen.insert(token).second) {
        parser.fail("repeats the label '", einsum_label_name(token), "' in its output term");
      }
      if (occurrences.count(token) == 0) {
        parser.fail("has the output label '", einsum_label_name(token), "' that no input term has");
      }
      spec.output_labels.push_back(token);
    }
  } else {
    // ONNX/numpy implicit output: ellipsis dims, then the letters used once, alphabetically.
    for (int64_t j = 0; j < widest; ++j)
      spec.output_labels.push_back(kEllipsisLabel + static_cast<int>(j));
    for (const auto& [label, count] : occurrences) {
      if (label < kEllipsisLabel && count == 1) spec.output_labels.push_back(label);
    }
  }

  // Sizes: a letter's known sizes must agree; so must an ellipsis dim's sizes other than 1 (a 1
  // broadcasts, to an unknown size too).
  std::set<int> dynamic_somewhere;
  for (size_t o = 0; o < spec.operand_labels.size(); ++o) {
    for (size_t axis = 0; axis < spec.operand_labels[o].size(); ++axis) {
      const int label = spec.operand_labels[o][axis];
      const int64_t size = operand_shapes[o][axis];
      if (size == kDynamicDim) {
        dynamic_somewhere.insert(label);
        continue;
      }
      if (label >= kEllipsisLabel && size == 1) continue;
      const auto [it, inserted] = spec.sizes.emplace(label, size);
      if (!inserted && it->second != size) {
        parser.fail("gives the label '", einsum_label_name(label), "' sizes ", it->second, " and ",
                    size, " (input ", o, " axis ", axis, ")");
      }
    }
  }
  for (const auto& [label, count] : occurrences) {
    if (spec.sizes.count(label) == 0) {
      spec.sizes[label] = dynamic_somewhere.count(label) != 0 ? kDynamicDim : 1;
    }
  }
  for (size_t o = 0; o < spec.operand_labels.size(); ++o) {
    std::vector<bool> flags;
    for (size_t axis = 0; axis < spec.operand_labels[o].size(); ++axis) {
      const int label = spec.operand_labels[o][axis];
      flags.push_back(label >= kEllipsisLabel && operand_shapes[o][axis] == 1 &&
                      spec.sizes.at(label) != 1);
    }
    spec.broadcast.push_back(std::move(flags));
  }
  return spec;
}

namespace {

void infer_einsum(InferContext& ctx) {
  const std::string equation = ctx.attrs().get_string("equation");
  if (ctx.num_inputs() > 2) {
    nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported, "equation \"", equation, "\" has ",
                ctx.num_inputs(), " operands; kiln supports Einsum with 1 or 2");
  }
  std::vector<Shape> shapes;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) ctx.fail("input ", i, " is absent");
    nn::require_float_or_float64_input(ctx, i, "operand");
    if (ctx.input(i).dtype != ctx.input(0).dtype) {
      ctx.fail("input ", i, " has dtype ", dtype_name(ctx.input(i).dtype), " but input 0 has ",
               dtype_name(ctx.input(0).dtype));
    }
    shapes.push_back(ctx.input(i).shape);
  }
  const std::string node =
      "node '" + std::string(ctx.node_name()) + "' (" + std::string(ctx.op()) + ")";
  const EinsumSpec spec = resolve_einsum(node, equation, shapes);
  Shape out;
  for (int label : spec.output_labels) out.push_back(spec.sizes.at(label));
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
}

}  // namespace

void register_einsum_ops(OpRegistry& registry) {
  // Any operand count reaches the infer function, which names the limit of 2.
  registry.add(OpDef{"Einsum", 1, 1 << 16, 1, 1, {}, &nn::infer_with_node_errors<infer_einsum>});
}

}  // namespace kiln::ops
