// Helpers shared by the neural-network op families (conv, gemm, normalization, pooling, softmax,
// reduce, resize): node-labelled errors, dtype checks and attribute readers used by both the infer
// functions and the CPU kernels.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/attributes.hpp"
#include "base/error.hpp"
#include "ops/op_registry.hpp"

namespace kiln::ops::nn {

// Names the node an error belongs to; infer functions and kernels both have one.
struct NodeLabel {
  std::string_view name;
  std::string_view op;
};

inline NodeLabel label_of(const InferContext& ctx) {
  return NodeLabel{ctx.node_name(), ctx.op()};
}

// Throws kiln::Error(code) "node '<name>' (<op>): <message>".
template <typename... Parts>
[[noreturn]] void fail_at(const NodeLabel& node, ErrorCode code, Parts&&... parts) {
  kiln::fail(code, "node '", node.name, "' (", node.op, "): ", std::forward<Parts>(parts)...);
}

// Rethrows `error` with the node prefix unless its message already names the node. Attribute
// getters report the attribute but not the node, so entry points route their errors through this.
[[noreturn]] void rethrow_with_node(const NodeLabel& node, const Error& error);

// Wraps an infer function so that every kiln::Error it raises names the node.
template <InferFn Fn>
void infer_with_node_errors(InferContext& ctx) {
  try {
    Fn(ctx);
  } catch (const Error& error) {
    rethrow_with_node(label_of(ctx), error);
  }
}

// float32, float16 or bfloat16: the dtypes the float-computing nn kernels accept.
bool is_float_compute_dtype(DType dtype);
// Fails with kUnsupported naming the node, the input and its dtype unless it is a float dtype.
void require_float_input(const InferContext& ctx, size_t index, std::string_view what);
// The same with float64 allowed too (ops whose CPU kernels compute in double; CUDA refuses them).
void require_float_or_float64_input(const InferContext& ctx, size_t index, std::string_view what);
// Fails unless input `index` has input 0's dtype (named `what`, X being input 0).
void require_same_dtype(const InferContext& ctx, size_t index, std::string_view what);
// Fails unless input `index` has at least `min_rank` dimensions.
void require_min_rank(const InferContext& ctx, size_t index, std::string_view what,
                      size_t min_rank);

// Product of known dimensions, or kDynamicDim when any of them is dynamic.
int64_t product_or_dynamic(const Shape& shape, size_t begin, size_t end);

// Row-major element strides of `shape`.
std::vector<int64_t> row_major_strides(const Shape& shape);

// Whether a dim is known at build time (not kDynamicDim).
inline bool known(int64_t dim) { return dim != kDynamicDim; }
// Whether two dims may be equal: either is unknown, or they are.
inline bool agree(int64_t a, int64_t b) { return !known(a) || !known(b) || a == b; }

}  // namespace kiln::ops::nn
