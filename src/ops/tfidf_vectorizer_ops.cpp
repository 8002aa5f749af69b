// TfIdfVectorizer: attribute checks and shape inference (tfidf_vectorizer.hpp).
#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ops/op_families.hpp"
#include "ops/tfidf_vectorizer.hpp"

namespace kiln::ops {
namespace nn {

namespace {

TfIdfMode parse_mode(const NodeLabel& node, const std::string& mode) {
  if (mode == "TF") return TfIdfMode::kTF;
  if (mode == "IDF") return TfIdfMode::kIDF;
  if (mode == "TFIDF") return TfIdfMode::kTFIDF;
  fail_at(node, ErrorCode::kInvalidArgument, "attribute 'mode' must be TF, IDF or TFIDF, got '",
          mode, "'");
}

}  // namespace

TfIdfVectorizerPlan resolve_tfidf_vectorizer(const NodeLabel& node, const AttributeMap& attrs) {
  TfIdfVectorizerPlan plan;
  plan.mode = parse_mode(node, attrs.get_string("mode"));
  plan.min_gram_length = attrs.get_int("min_gram_length");
  plan.max_gram_length = attrs.get_int("max_gram_length");
  plan.max_skip_count = attrs.get_int("max_skip_count");
  if (plan.min_gram_length < 1 || plan.min_gram_length > plan.max_gram_length) {
    fail_at(node, ErrorCode::kInvalidArgument, "min_gram_length (", plan.min_gram_length,
            ") must be in [1, max_gram_length = ", plan.max_gram_length, "]");
  }
  if (plan.max_skip_count < 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "max_skip_count must be >= 0, got ",
            plan.max_skip_count);
  }
  const bool has_ints = attrs.has("pool_int64s");
  const bool has_strings = attrs.has("pool_strings");
  if (has_ints == has_strings) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "exactly one of attributes 'pool_int64s' and 'pool_strings' must be given, got ",
            has_ints ? "both" : "neither");
  }
  if (has_strings) {
    fail_at(node, ErrorCode::kUnsupported,
            "attribute 'pool_strings' (string n-grams) needs string tensors, which kiln does not ",
            "support; integer tokens with 'pool_int64s' are supported");
  }
  const std::vector<int64_t>& pool = attrs.get_ints("pool_int64s");
  const std::vector<int64_t>& counts = attrs.get_ints("ngram_counts");
  const std::vector<int64_t>& indexes = attrs.get_ints("ngram_indexes");
  const auto pool_size = static_cast<int64_t>(pool.size());
  if (counts.empty() || counts[0] != 0) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'ngram_counts' must start at 0 (the 1-grams' first index in the pool), got ",
            counts.empty() ? "an empty list" : std::to_string(counts[0]));
  }

  // ngram_counts[k] is where the (k + 1)-grams start in the pool; the last run ends at its end.
  std::vector<std::pair<std::vector<int64_t>, int64_t>> pool_ngrams;  // tokens, n-gram number
  int64_t ngram_number = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    const int64_t begin = counts[k];
    const int64_t end = k + 1 < counts.size() ? counts[k + 1] : pool_size;
    const auto n = static_cast<int64_t>(k) + 1;
    if (end < begin || end > pool_size) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "attribute 'ngram_counts' must be non-decreasing and within the pool's ", pool_size,
              " items, got ngram_counts[", k, "] = ", begin, " followed by ", end);
    }
    if ((end - begin) % n != 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "the ", n, "-grams (pool items ", begin, " to ",
              end, ", from ngram_counts) are ", end - begin, " items, not a multiple of ", n);
    }
    for (int64_t at = begin; at < end; at += n, ++ngram_number) {
      if (n < plan.min_gram_length || n > plan.max_gram_length) continue;
      pool_ngrams.emplace_back(std::vector<int64_t>(pool.begin() + at, pool.begin() + at + n),
                               ngram_number);
    }
  }
  if (ngram_number == 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'pool_int64s' holds no n-gram");
  }
  if (static_cast<int64_t>(indexes.size()) != ngram_number) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'ngram_indexes' must give one output coordinate per n-gram of the pool (",
            ngram_number, "), got ", indexes.size());
  }
  for (size_t i = 0; i < indexes.size(); ++i) {
    if (indexes[i] < 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "ngram_indexes[", i, "] = ", indexes[i],
              " is negative");
    }
  }
  plan.output_size = *std::max_element(indexes.begin(), indexes.end()) + 1;

  const bool has_weights = attrs.has("weights");
  const std::vector<float> weights =
      has_weights ? attrs.get_floats("weights") : std::vector<float>{};
  if (has_weights && weights.size() != indexes.size()) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'weights' must give one weight per n-gram of the pool (", indexes.size(),
            "), got ", weights.size());
  }
  std::map<std::vector<int64_t>, int64_t> seen;  // tokens -> n-gram number
  std::map<int64_t, int64_t> column_owner;       // output coordinate -> n-gram number
  for (auto& [tokens, number] : pool_ngrams) {
    const auto i = static_cast<size_t>(number);
    const int64_t column = indexes[i];
    if (const auto [it, first] = seen.emplace(tokens, number); !first) {
      fail_at(node, ErrorCode::kInvalidArgument, "n-grams ", it->second, " and ", number,
              " of the pool are the same tokens");
    }
    if (const auto [it, first] = column_owner.emplace(column, number);
        !first && plan.mode == TfIdfMode::kIDF) {
      fail_at(node, ErrorCode::kUnsupported, "n-grams ", it->second, " and ", number,
              " of the pool share output coordinate ", column,
              " in IDF mode, where ONNX's specification (a weight per n-gram found) and ONNX "
              "Runtime (the coordinate's weight once) give different results");
    }
    if (has_weights) {
      const auto at = static_cast<size_t>(column);
      if (at >= weights.size() || weights[at] != weights[i]) {
        std::ostringstream theirs;
        if (at >= weights.size()) {
          theirs << ", which does not exist";
        } else {
          theirs << " = " << weights[at];
        }
        fail_at(node, ErrorCode::kUnsupported, "weights[", i, "] = ", weights[i], " scales n-gram ",
                i, " of the pool in ONNX's specification, but ONNX Runtime and ONNX's reference ",
                "scale its output coordinate ", column, " by weights[", column, "]", theirs.str(),
                "; kiln runs weights only where the two agree");
      }
    }
    plan.ngrams.push_back(TfIdfNgram{std::move(tokens), column, has_weights ? weights[i] : 1.0f});
  }
  return plan;
}

}  // namespace nn

namespace {

void infer_tfidf_vectorizer(InferContext& ctx) {
  const nn::TfIdfVectorizerPlan plan = nn::resolve_tfidf_vectorizer(nn::label_of(ctx), ctx.attrs());
  const DType dtype = ctx.input(0).dtype;
  if (dtype != DType::kInt32 && dtype != DType::kInt64) {
    nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported, "input 0 (X) has dtype ",
                dtype_name(dtype),
                "; supported: int32, int64 (string tokens need string tensors, which kiln does not "
                "support)");
  }
  const Shape& x = ctx.input(0).shape;
  if (x.size() != 1 && x.size() != 2) {
    ctx.fail("input 0 (X) must be [C] or [N, C], got ", shape_to_string(x));
  }
  ctx.output(0).dtype = DType::kFloat32;
  ctx.output(0).shape = x.size() == 1 ? Shape{plan.output_size} : Shape{x[0], plan.output_size};
}

}  // namespace

void register_tfidf_vectorizer_ops(OpRegistry& registry) {
  registry.add(OpDef{
      "TfIdfVectorizer", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_tfidf_vectorizer>});
}

}  // namespace kiln::ops
