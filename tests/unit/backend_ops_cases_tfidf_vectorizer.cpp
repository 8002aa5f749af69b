// Conformance cases (backend_ops_cases.hpp) of TfIdfVectorizer: integer tokens over a small
// vocabulary, so that the pool's 1- and 2-grams occur at several strides, in each mode.
#include "backend_ops_cases.hpp"

namespace kiln::conformance {
namespace {

OpCase tfidf_case(const std::string& mode, Shape shape) {
  // 1-grams 1, 3 and 2-grams (1, 2), (2, 2), (4, 1). TF: coordinates in another order, one spare;
  // IDF and TFIDF: weights, which ONNX's definitions agree on only with coordinates in order.
  const bool weighted = mode != "TF";
  AttributeMap a =
      attrs({{"mode", of_string(mode)},
             {"min_gram_length", of_int(1)},
             {"max_gram_length", of_int(2)},
             {"max_skip_count", of_int(2)},
             {"pool_int64s", of_ints({1, 3, 1, 2, 2, 2, 4, 1})},
             {"ngram_counts", of_ints({0, 2})},
             {"ngram_indexes", weighted ? of_ints({0, 1, 2, 3, 4}) : of_ints({4, 0, 2, 1, 6})}});
  if (weighted) a.set("weights", Attribute::of_floats({0.5f, 1.5f, 2.0f, 1.5f, 3.0f}));
  return OpCase{.variant = mode + "_rank" + std::to_string(shape.size()),
                .inputs = {input(std::move(shape), uniform(0, 4))},
                .attrs = std::move(a),
                .dtypes = {DType::kInt32, DType::kInt64}};
}

[[maybe_unused]] const bool kRegistered = [] {
  register_op_cases("TfIdfVectorizer", {tfidf_case("TF", {2, 12}), tfidf_case("TF", {9}),
                                        tfidf_case("IDF", {3, 7}), tfidf_case("TFIDF", {3, 7})});
  return true;
}();

}  // namespace
}  // namespace kiln::conformance
