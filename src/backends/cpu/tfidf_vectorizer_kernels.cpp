// TfIdfVectorizer on the CPU (ops/tfidf_vectorizer.hpp): the pool's n-grams go into a trie of
// tokens; each start position of each row walks it at each stride, as ONNX's reference does.
#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "ops/tfidf_vectorizer.hpp"

namespace kiln::cpu {
namespace {

// Trie of the pool's n-grams: node 0 is the root; a node ending an n-gram has its output column.
class NgramTrie {
 public:
  explicit NgramTrie(const std::vector<ops::nn::TfIdfNgram>& ngrams) : nodes_(1) {
    for (const ops::nn::TfIdfNgram& ngram : ngrams) {
      size_t at = 0;
      for (const int64_t token : ngram.tokens) {
        const auto [it, added] = nodes_[at].children.emplace(token, nodes_.size());
        if (added) nodes_.emplace_back();
        at = it->second;
      }
      nodes_[at].column = ngram.column;
    }
  }
  static constexpr size_t kNone = ~size_t{0};
  static constexpr size_t kRoot = 0;
  // The child of `node` for `token`, or kNone.
  size_t child(size_t node, int64_t token) const {
    const auto it = nodes_[node].children.find(token);
    return it == nodes_[node].children.end() ? kNone : it->second;
  }
  int64_t column(size_t node) const { return nodes_[node].column; }

 private:
  struct Node {
    std::map<int64_t, size_t> children;
    int64_t column = -1;  // -1: no n-gram of the pool ends here
  };
  std::vector<Node> nodes_;
};

// Adds one to counts[column] for every pool n-gram found in `row`.
template <typename T>
void count_row(const ops::nn::TfIdfVectorizerPlan& plan, const NgramTrie& trie, const T* row,
               int64_t length, int64_t* counts) {
  int64_t shortest = plan.min_gram_length;
  for (int64_t stride = 1; stride <= plan.max_skip_count + 1; ++stride) {
    for (int64_t start = 0; start + stride * (shortest - 1) < length; ++start) {
      size_t node = NgramTrie::kRoot;
      for (int64_t n = 1, item = start; n <= plan.max_gram_length && item < length;
           ++n, item += stride) {
        node = trie.child(node, static_cast<int64_t>(row[item]));
        if (node == NgramTrie::kNone) break;
        if (n >= shortest && trie.column(node) >= 0) ++counts[trie.column(node)];
      }
    }
    // A stride changes nothing for 1-grams: they are counted at stride 1 only.
    if (shortest == 1) shortest = 2;
    if (shortest > plan.max_gram_length) break;
  }
}

void tfidf_vectorizer_kernel(KernelContext& ctx) {
  const ops::nn::TfIdfVectorizerPlan plan =
      ops::nn::resolve_tfidf_vectorizer(nn::label_of(ctx), ctx.attrs);
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() != 1 && x.shape.size() != 2) {
    ctx.fail(ErrorCode::kInvalidArgument, "input 0 (X) must be [C] or [N, C], got ",
             shape_to_string(x.shape));
  }
  const int64_t rows = x.shape.size() == 1 ? 1 : x.shape[0];
  const int64_t length = x.shape.back();
  nn::require_output_shape(
      ctx, 0, x.shape.size() == 1 ? Shape{plan.output_size} : Shape{rows, plan.output_size});
  const NgramTrie trie(plan.ngrams);
  std::vector<int64_t> counts(static_cast<size_t>(plan.output_size));
  std::vector<float> column_weight(static_cast<size_t>(plan.output_size), 1.0f);
  for (const ops::nn::TfIdfNgram& ngram : plan.ngrams) {
    column_weight[static_cast<size_t>(ngram.column)] = ngram.weight;
  }
  float* out = ctx.outputs[0].as<float>();
  const bool done = dispatch_among<int32_t, int64_t>(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t r = 0; r < rows; ++r) {
      std::fill(counts.begin(), counts.end(), 0);
      count_row(plan, trie, x.as<const T>() + r * length, length, counts.data());
      float* y = out + r * plan.output_size;
      for (int64_t c = 0; c < plan.output_size; ++c) {
        const auto count = static_cast<float>(counts[static_cast<size_t>(c)]);
        const float weight = column_weight[static_cast<size_t>(c)];
        switch (plan.mode) {
          case ops::nn::TfIdfMode::kTF:
            y[c] = count;
            break;
          case ops::nn::TfIdfMode::kIDF:
            y[c] = count > 0 ? weight : 0.0f;
            break;
          case ops::nn::TfIdfMode::kTFIDF:
            y[c] = count * weight;
            break;
        }
      }
    }
  });
  if (!done) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 (X) has dtype ", dtype_name(x.dtype),
             "; supported: int32, int64");
  }
}

}  // namespace

void register_tfidf_vectorizer_kernels(CpuKernelRegistry& registry) {
  registry.add("TfIdfVectorizer",
               CpuKernel{&nn::kernel_with_node_errors<tfidf_vectorizer_kernel>, false});
}

}  // namespace kiln::cpu
