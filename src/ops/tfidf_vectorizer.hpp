// TfIdfVectorizer (ai.onnx, opset 9): counts, per row of integer tokens X, the n-grams of a pool
// given as attributes, and writes each count (or its weighting) at the n-gram's output coordinate.
//   X [C] or [N, C] (int32, int64) -> Y [O] or [N, O] float32, O = max(ngram_indexes) + 1.
// An n-gram of length n (min_gram_length <= n <= max_gram_length) takes n tokens at a stride of
// skip + 1 for every skip in [0, max_skip_count]; 1-grams are counted once (a stride changes
// nothing for them). Modes: TF (the count), IDF (weight where the count is > 0, else 0), TFIDF
// (count * weight); weights default to 1.
//
// The infer function and the CPU kernel both read the attributes through
// resolve_tfidf_vectorizer, so they refuse the same models.
#pragma once

#include <cstdint>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

enum class TfIdfMode { kTF, kIDF, kTFIDF };

struct TfIdfNgram {
  std::vector<int64_t> tokens;  // 1 to max_gram_length tokens
  int64_t column = 0;           // its output coordinate (ngram_indexes)
  // weights[i] (1 without weights); the n-grams of one output coordinate have the same (checked).
  float weight = 1.0f;
};

struct TfIdfVectorizerPlan {
  TfIdfMode mode = TfIdfMode::kTF;
  int64_t min_gram_length = 1;
  int64_t max_gram_length = 1;
  int64_t max_skip_count = 0;
  // The pool's n-grams whose length is within [min_gram_length, max_gram_length] (the others
  // can never be counted), each once.
  std::vector<TfIdfNgram> ngrams;
  int64_t output_size = 0;  // O: max(ngram_indexes) + 1
};

// Reads and checks the attributes. Fails (kInvalidArgument naming the node and the attribute,
// expected vs got) for: a required attribute missing; mode not TF, IDF or TFIDF; min_gram_length
// < 1 or > max_gram_length; max_skip_count < 0; neither or both of pool_int64s and pool_strings;
// ngram_counts not starting at 0, decreasing, past the pool, or giving a collection whose size is
// not a multiple of its n; a pool without n-grams; ngram_indexes not one per n-gram of the pool
// or negative; weights not one per n-gram; an n-gram of a counted length twice in the pool. Fails
// with kUnsupported for pool_strings (kiln has no string tensors) and where ONNX's specification
// and its reference/ONNX Runtime disagree (kiln computes only what both give): weights scale the
// i-th pool n-gram in the specification but output coordinate i in the others, so weights[i] must
// equal weights[ngram_indexes[i]]; and in IDF mode two n-grams of the pool may not share an output
// coordinate.
TfIdfVectorizerPlan resolve_tfidf_vectorizer(const NodeLabel& node, const AttributeMap& attrs);

}  // namespace kiln::ops::nn
