// CPU kernels of the data movement family. They copy elements as bytes and so work for every
// dtype (float_compute = false). Affine rearrangements (Transpose, Slice) go through copy_strided.
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "backends/cpu/tensor_strided.hpp"
#include "base/half.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::cpu {
namespace {

ops::NodeRef node_of(const KernelContext& ctx) {
  return ops::NodeRef{ctx.node_name, ctx.op};
}

bool present(const KernelContext& ctx, size_t i) {
  return i < ctx.inputs.size() && ctx.inputs[i].present();
}

size_t normalized_axis(const KernelContext& ctx, int64_t axis, size_t rank) {
  const auto r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) {
    ctx.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for rank ", rank);
  }
  return static_cast<size_t>(axis < 0 ? axis + r : axis);
}

int64_t product(const Shape& shape, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= shape[i];
  return p;
}

void check_output_shape(const KernelContext& ctx, const Shape& expected, const Shape& got) {
  if (expected != got) {
    ctx.fail(ErrorCode::kInternal, "output was allocated as ", shape_to_string(got),
             " but the inputs give ", shape_to_string(expected));
  }
}

// A transpose whose output rows are short and strided in the input (NCHW -> NHWC: rows of C
// elements, HW apart) spends its time in per-row overhead and cache misses. When some other
// output axis reads the input contiguously, the copy runs as 2-D transposes between those two
// axes in square tiles instead, for every position of the remaining axes, blocks of rows split
// over the context's threads. Returns false when the tensor has no such pair.
template <typename T>
bool transpose_in_tiles(const T* src, T* dst, const Shape& out_shape, const std::vector<int64_t>& in_strides) {
  const StridedLoop<1> loop = make_strided_loop<1>(out_shape, {in_strides});
  const size_t rank = loop.dims.size();
  if (rank < 2 || loop.strides[rank - 1][0] == 1 || loop.dims[rank - 1] > 64) return false;
  size_t contiguous = rank;
  for (size_t d = 0; d + 1 < rank; ++d) {
    if (loop.strides[d][0] == 1) contiguous = d;
  }
  if (contiguous == rank) return false;
  // Output strides of the merged loop (dense, row-major).
  std::vector<int64_t> out_strides(rank);
  int64_t stride = 1;
  for (size_t d = rank; d-- > 0;) {
    out_strides[d] = stride;
    stride *= loop.dims[d];
  }
  const int64_t rows = loop.dims[contiguous];  // read along these
  const int64_t cols = loop.dims[rank - 1];    // written along these
  const int64_t row_out = out_strides[contiguous], col_in = loop.strides[rank - 1][0];
  std::vector<size_t> others;  // the other axes
  int64_t positions = 1;       // of the other axes
  for (size_t d = 0; d + 1 < rank; ++d) {
    if (d == contiguous) continue;
    others.push_back(d);
    positions *= loop.dims[d];
  }
  // Tasks of kBlock rows at one position of the other axes, split over the context's threads;
  // within a task, square tiles of kTile rows by the columns.
  constexpr int64_t kTile = 16, kBlock = 512;
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, std::min(rows, kBlock) * cols));
  parallel_chunks(positions * blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      int64_t position = task / blocks, in_base = 0, out_base = 0;
      for (size_t i = others.size(); i-- > 0;) {
        const int64_t index = position % loop.dims[others[i]];
        position /= loop.dims[others[i]];
        in_base += index * loop.strides[others[i]][0];
        out_base += index * out_strides[others[i]];
      }
      const int64_t first = task % blocks * kBlock, last = std::min(rows, first + kBlock);
      for (int64_t r0 = first; r0 < last; r0 += kTile) {
        const int64_t r1 = std::min(last, r0 + kTile);
        for (int64_t c = 0; c < cols; ++c) {
          const T* from = src + in_base + c * col_in;
          T* to = dst + out_base + c;
          for (int64_t r = r0; r < r1; ++r) to[r * row_out] = from[r];
        }
      }
    }
  });
  return true;
}

void transpose_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const size_t rank = in.shape.size();
  std::vector<int64_t> perm(rank);
  for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(rank - 1 - i);
  if (ctx.attrs.has("perm")) perm = ctx.attrs.get_ints("perm");
  const std::vector<int64_t> in_strides = dense_strides(in.shape);
  std::vector<int64_t> strides(rank);
  for (size_t i = 0; i < rank; ++i) strides[i] = in_strides[static_cast<size_t>(perm[i])];
  if (out.numel() > 0) {
    switch (dtype_size(in.dtype)) {
      case 4:
        if (transpose_in_tiles(in.as<const uint32_t>(), out.as<uint32_t>(), out.shape, strides)) return;
        break;
      case 2:
        if (transpose_in_tiles(in.as<const uint16_t>(), out.as<uint16_t>(), out.shape, strides)) return;
        break;
      default:
        break;
    }
  }
  copy_strided(in.data, out.data, dtype_size(in.dtype), out.shape, strides);
}

void concat_kernel(KernelContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int("axis"), out.shape.size());
  const size_t esize = dtype_size(out.dtype);
  const int64_t outer = product(out.shape, 0, axis);
  const auto inner_bytes =
      static_cast<size_t>(product(out.shape, axis + 1, out.shape.size())) * esize;
  const size_t out_row = static_cast<size_t>(out.shape[axis]) * inner_bytes;
  auto* dst = out.as<uint8_t>();
  size_t column = 0;
  for (const TensorView& in : ctx.inputs) {
    const size_t in_row = static_cast<size_t>(in.shape[axis]) * inner_bytes;
    const auto* src = in.as<const uint8_t>();
    if (in_row > 0) {
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(dst + static_cast<size_t>(o) * out_row + column,
                    src + static_cast<size_t>(o) * in_row, in_row);
      }
    }
    column += in_row;
  }
}

void split_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), in.shape.size());
  std::optional<std::vector<int64_t>> split;
  if (present(ctx, 1)) split = read_indices(ctx.inputs[1]);
  const std::vector<int64_t> sizes =
      ops::resolve_split_sizes(node_of(ctx), in.shape[axis], split,
                               ctx.attrs.get_int_or("num_outputs", 0), ctx.outputs.size());
  const size_t esize = dtype_size(in.dtype);
  const int64_t outer = product(in.shape, 0, axis);
  const auto inner_bytes =
      static_cast<size_t>(product(in.shape, axis + 1, in.shape.size())) * esize;
  const size_t in_row = static_cast<size_t>(in.shape[axis]) * inner_bytes;
  const auto* src = in.as<const uint8_t>();
  size_t column = 0;
  for (size_t i = 0; i < ctx.outputs.size(); ++i) {
    const TensorView& out = ctx.outputs[i];
    Shape expected = in.shape;
    expected[axis] = sizes[i];
    check_output_shape(ctx, expected, out.shape);
    const size_t out_row = static_cast<size_t>(sizes[i]) * inner_bytes;
    auto* dst = out.as<uint8_t>();
    if (out_row > 0) {
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(dst + static_cast<size_t>(o) * out_row,
                    src + static_cast<size_t>(o) * in_row + column, out_row);
      }
    }
    column += out_row;
  }
}

void slice_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const std::vector<int64_t> starts = read_indices(ctx.inputs[1]);
  const std::vector<int64_t> ends = read_indices(ctx.inputs[2]);
  const std::vector<int64_t> axes_given =
      present(ctx, 3) ? read_indices(ctx.inputs[3]) : std::vector<int64_t>{};
  const std::vector<int64_t> steps =
      present(ctx, 4) ? read_indices(ctx.inputs[4]) : std::vector<int64_t>(starts.size(), 1);
  const ops::SliceGeometry g =
      ops::resolve_slice(ops::NodeRef{ctx.node_name, ctx.op}, in.shape, starts, ends, axes_given, steps);
  check_output_shape(ctx, g.output, out.shape);
  copy_strided(in.data, out.data, dtype_size(in.dtype), out.shape, g.strides, g.offset);
}

// Validated, non-negative indices; errors name the offending position and value.
std::vector<int64_t> checked_indices(const KernelContext& ctx, const TensorView& indices,
                                     int64_t dim, size_t axis) {
  std::vector<int64_t> out = read_indices(indices);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t index = out[i];
    if (index < -dim || index >= dim) {
      ctx.fail(ErrorCode::kInvalidArgument, "index ", index, " (element ", i,
               " of the indices) is out of range for axis ", axis, " of size ", dim);
    }
    if (index < 0) out[i] = index + dim;
  }
  return out;
}

void gather_kernel(KernelContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), data.shape.size());
  const std::vector<int64_t> indices = checked_indices(ctx, ctx.inputs[1], data.shape[axis], axis);
  const size_t esize = dtype_size(data.dtype);
  const int64_t outer = product(data.shape, 0, axis);
  const auto inner_bytes =
      static_cast<size_t>(product(data.shape, axis + 1, data.shape.size())) * esize;
  const size_t data_row = static_cast<size_t>(data.shape[axis]) * inner_bytes;
  const auto* src = data.as<const uint8_t>();
  auto* dst = out.as<uint8_t>();
  if (inner_bytes == 0) return;
  for (int64_t o = 0; o < outer; ++o) {
    const uint8_t* row = src + static_cast<size_t>(o) * data_row;
    for (int64_t index : indices) {
      std::memcpy(dst, row + static_cast<size_t>(index) * inner_bytes, inner_bytes);
      dst += inner_bytes;
    }
  }
}

template <typename E>
void gather_elements_typed(const KernelContext& ctx, size_t axis) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const int64_t dim = data.shape[axis];
  std::vector<int64_t> data_strides = dense_strides(data.shape);
  const int64_t axis_stride = data_strides[axis];
  data_strides[axis] = 0;  // the index along `axis` comes from the indices tensor
  const std::vector<int64_t> idx = read_indices(indices);
  const E* src = data.as<const E>();
  E* dst = out.as<E>();
  const StridedLoop<2> loop =
      make_strided_loop<2>(indices.shape, {dense_strides(indices.shape), data_strides});
  for_each_row(loop, {0, 0},
               [&](int64_t o, std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
                 for (int64_t i = 0; i < n; ++i) {
                   int64_t index = idx[static_cast<size_t>(off[0] + i * st[0])];
                   if (index < -dim || index >= dim) {
                     ctx.fail(ErrorCode::kInvalidArgument, "index ", index, " (element ",
                              off[0] + i * st[0], " of the indices) is out of range for axis ",
                              axis, " of size ", dim);
                   }
                   if (index < 0) index += dim;
                   dst[o + i] = src[off[1] + i * st[1] + index * axis_stride];
                 }
               });
}

void gather_elements_kernel(KernelContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), data.shape.size());
  for (size_t i = 0; i < data.shape.size(); ++i) {
    if (i != axis && ctx.inputs[1].shape[i] > data.shape[i]) {
      ctx.fail(ErrorCode::kInvalidArgument, "indices shape ", shape_to_string(ctx.inputs[1].shape),
               " exceeds data shape ", shape_to_string(data.shape), " outside axis ", axis);
    }
  }
  switch (dtype_size(data.dtype)) {
    case 1:
      return gather_elements_typed<uint8_t>(ctx, axis);
    case 2:
      return gather_elements_typed<uint16_t>(ctx, axis);
    case 4:
      return gather_elements_typed<uint32_t>(ctx, axis);
    default:
      return gather_elements_typed<uint64_t>(ctx, axis);
  }
}

// Maps output coordinate -> input coordinate along one padded dimension, or -1 for the constant.
std::vector<int64_t> pad_source_map(int64_t in_dim, int64_t begin, int64_t out_dim,
                                    const std::string& mode) {
  std::vector<int64_t> map(static_cast<size_t>(out_dim));
  for (int64_t o = 0; o < out_dim; ++o) {
    int64_t i = o - begin;
    if (i < 0 || i >= in_dim) {
      if (mode == "constant") {
        i = -1;
      } else if (mode == "edge") {
        i = i < 0 ? 0 : in_dim - 1;
      } else if (mode == "wrap") {
        i = ((i % in_dim) + in_dim) % in_dim;
      } else {  // reflect, pads < in_dim (checked by infer), so one reflection suffices
        i = i < 0 ? -i : 2 * (in_dim - 1) - i;
      }
    }
    map[static_cast<size_t>(o)] = i;
  }
  return map;
}

template <typename E>
void pad_typed(const TensorView& in, const TensorView& out,
               const std::vector<std::vector<int64_t>>& maps, E constant) {
  const size_t rank = out.shape.size();
  const E* src = in.as<const E>();
  E* dst = out.as<E>();
  if (rank == 0) {
    dst[0] = src[0];
    return;
  }
  const std::vector<int64_t> in_strides = dense_strides(in.shape);
  const int64_t inner = out.shape[rank - 1];
  const std::vector<int64_t>& inner_map = maps[rank - 1];
  const int64_t rows = product(out.shape, 0, rank - 1);
  std::vector<int64_t> coord(rank - 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = 0;
    bool padded_row = false;
    for (size_t d = 0; d + 1 < rank; ++d) {
      const int64_t source = maps[d][static_cast<size_t>(coord[d])];
      if (source < 0) padded_row = true;
      base += source * in_strides[d];
    }
    E* row = dst + r * inner;
    if (padded_row) {
      for (int64_t j = 0; j < inner; ++j) row[j] = constant;
    } else {
      for (int64_t j = 0; j < inner; ++j) {
        const int64_t source = inner_map[static_cast<size_t>(j)];
        row[j] = source < 0 ? constant : src[base + source];
      }
    }
    for (size_t d = rank - 1; d-- > 0;) {
      if (++coord[d] < out.shape[d]) break;
      coord[d] = 0;
    }
  }
}

void pad_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const auto rank = static_cast<int64_t>(in.shape.size());
  const std::string mode = ctx.attrs.get_string_or("mode", "constant");
  const std::vector<int64_t> axes =
      present(ctx, 3) ? read_indices(ctx.inputs[3]) : std::vector<int64_t>{};
  const std::vector<int64_t> pads =
      ops::resolve_pads(node_of(ctx), read_indices(ctx.inputs[1]), axes, rank);
  Shape expected = in.shape;
  std::vector<std::vector<int64_t>> maps(in.shape.size());
  for (size_t d = 0; d < in.shape.size(); ++d) {
    expected[d] += pads[d] + pads[d + in.shape.size()];
    if (expected[d] < 0)
      ctx.fail(ErrorCode::kInvalidArgument, "pads make dimension ", d, " negative");
    if (mode != "constant" && expected[d] > 0 && in.shape[d] == 0) {
      ctx.fail(ErrorCode::kInvalidArgument, mode, " padding of an empty dimension ", d);
    }
    if (mode == "reflect" && (pads[d] >= in.shape[d] || pads[d + in.shape.size()] >= in.shape[d]) &&
        (pads[d] > 0 || pads[d + in.shape.size()] > 0)) {
      ctx.fail(ErrorCode::kInvalidArgument, "reflect pads must be smaller than dimension ", d,
               " of size ", in.shape[d]);
    }
    maps[d] = pad_source_map(in.shape[d], pads[d], expected[d], mode);
  }
  check_output_shape(ctx, expected, out.shape);
  if (out.numel() == 0) return;
  const size_t esize = dtype_size(in.dtype);
  uint64_t constant_bits = 0;  // zero in every dtype
  if (mode == "constant" && present(ctx, 2) && ctx.inputs[2].numel() > 0) {
    std::memcpy(&constant_bits, ctx.inputs[2].data, esize);
  }
  auto constant_as = [&](auto zero) {
    decltype(zero) v;
    std::memcpy(&v, &constant_bits, sizeof(v));
    return v;
  };
  switch (esize) {
    case 1:
      return pad_typed<uint8_t>(in, out, maps, constant_as(uint8_t{}));
    case 2:
      return pad_typed<uint16_t>(in, out, maps, constant_as(uint16_t{}));
    case 4:
      return pad_typed<uint32_t>(in, out, maps, constant_as(uint32_t{}));
    default:
      return pad_typed<uint64_t>(in, out, maps, constant_as(uint64_t{}));
  }
}

// ---- GatherND ------------------------------------------------------------------------------

// out[b..., t..., s...] = data[b..., indices[b..., t..., :], s...]: each index tuple of length k
// selects a contiguous slice of data.shape[batch_dims + k:] within its batch.
void gather_nd_kernel(KernelContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const ops::GatherNdGeometry geometry = ops::resolve_gather_nd(
      ops::NodeRef{ctx.node_name, ctx.op}, data.shape, indices.shape, ctx.attrs.get_int_or("batch_dims", 0));
  const size_t batch_dims = geometry.batch_dims;
  const size_t k = geometry.tuple_length;
  const size_t data_rank = data.shape.size();
  const size_t indices_rank = indices.shape.size();
  check_output_shape(ctx, geometry.output, out.shape);
  const int64_t batches = product(data.shape, 0, batch_dims);
  const int64_t tuples_per_batch = product(indices.shape, batch_dims, indices_rank - 1);
  const int64_t batch_stride = product(data.shape, batch_dims, data_rank);
  const size_t esize = dtype_size(data.dtype);
  const auto slice_bytes =
      static_cast<size_t>(product(data.shape, batch_dims + k, data_rank)) * esize;
  const std::vector<int64_t> strides = dense_strides(data.shape);
  const std::vector<int64_t> idx = read_indices(indices);
  const auto* src = data.as<const uint8_t>();
  auto* dst = out.as<uint8_t>();
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t t = 0; t < tuples_per_batch; ++t) {
      const int64_t tuple = b * tuples_per_batch + t;
      int64_t offset = b * batch_stride;
      for (size_t j = 0; j < k; ++j) {
        const size_t axis = batch_dims + j;
        const int64_t dim = data.shape[axis];
        int64_t index = idx[static_cast<size_t>(tuple) * k + j];
        if (index < -dim || index >= dim) {
          ctx.fail(ErrorCode::kInvalidArgument, "index ", index, " (position ", j, " of tuple ",
                   tuple, " of the indices) is out of range for axis ", axis, " of size ", dim);
        }
        if (index < 0) index += dim;
        offset += index * strides[axis];
      }
      if (slice_bytes > 0) {
        std::memcpy(dst + static_cast<size_t>(tuple) * slice_bytes,
                    src + static_cast<size_t>(offset) * esize, slice_bytes);
      }
    }
  }
}

// ---- ScatterND ----------------------------------------------------------------------------

template <typename T>
void scatter_reduce(T* dst, const T* src, int64_t n, const std::string& reduction) {
  // Integers wrap on overflow (computed unsigned) rather than invoking undefined behaviour.
  using Wide = std::conditional_t<std::is_integral_v<T>, uint64_t, T>;
  for (int64_t i = 0; i < n; ++i) {
    if (reduction == "add") {
      dst[i] = static_cast<T>(static_cast<Wide>(dst[i]) + static_cast<Wide>(src[i]));
    } else if (reduction == "mul") {
      dst[i] = static_cast<T>(static_cast<Wide>(dst[i]) * static_cast<Wide>(src[i]));
    } else if (reduction == "max") {
      dst[i] = dst[i] < src[i] ? src[i] : dst[i];
    } else {
      dst[i] = src[i] < dst[i] ? src[i] : dst[i];
    }
  }
}

// float16/bfloat16 bits reduced in float32 and rounded back (as float_compute kernels do).
template <float (*ToFloat)(uint16_t), uint16_t (*FromFloat)(float)>
void scatter_reduce_16bit(uint16_t* dst, const uint16_t* src, int64_t n,
                          const std::string& reduction) {
  for (int64_t i = 0; i < n; ++i) {
    float value = ToFloat(dst[i]);
    const float update = ToFloat(src[i]);
    scatter_reduce(&value, &update, 1, reduction);
    dst[i] = FromFloat(value);
  }
}

// Reduces `n` updates at `src` into `dst`, both elements of `dtype`; false for a dtype without
// arithmetic (the op's infer function refuses reductions on those).
bool scatter_reduce_bytes(DType dtype, uint8_t* dst, const uint8_t* src, int64_t n,
                          const std::string& reduction) {
  if (dtype == DType::kFloat16 || dtype == DType::kBFloat16) {
    auto* d = reinterpret_cast<uint16_t*>(dst);
    const auto* s = reinterpret_cast<const uint16_t*>(src);
    if (dtype == DType::kFloat16) {
      scatter_reduce_16bit<half_to_float, float_to_half>(d, s, n, reduction);
    } else {
      scatter_reduce_16bit<bfloat16_to_float, float_to_bfloat16>(d, s, n, reduction);
    }
    return true;
  }
  return dispatch_among<KILN_NUMERIC_TYPES>(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_reduce(reinterpret_cast<T*>(dst), reinterpret_cast<const T*>(src), n, reduction);
  });
}

void scatter_nd_kernel(KernelContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& updates = ctx.inputs[2];
  const TensorView& out = ctx.outputs[0];
  const std::string reduction = ctx.attrs.get_string_or("reduction", "none");
  if (data.nbytes() > 0) std::memcpy(out.data, data.data, data.nbytes());
  const auto k = static_cast<size_t>(indices.shape.back());
  const int64_t tuples = product(indices.shape, 0, indices.shape.size() - 1);
  const int64_t slice = product(data.shape, k, data.shape.size());
  if (updates.numel() != tuples * slice) {
    ctx.fail(ErrorCode::kInvalidArgument, "updates has ", updates.numel(), " elements; expected ",
             tuples * slice);
  }
  const std::vector<int64_t> idx = read_indices(indices);
  const std::vector<int64_t> strides = dense_strides(data.shape);
  const size_t esize = dtype_size(data.dtype);
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t offset = 0;
    for (size_t j = 0; j < k; ++j) {
      int64_t index = idx[static_cast<size_t>(t) * k + j];
      const int64_t dim = data.shape[j];
      if (index < -dim || index >= dim) {
        ctx.fail(ErrorCode::kInvalidArgument, "index ", index, " (tuple ", t,
                 ") is out of range for axis ", j, " of size ", dim);
      }
      if (index < 0) index += dim;
      offset += index * strides[j];
    }
    if (reduction == "none") {
      std::memcpy(out.as<uint8_t>() + static_cast<size_t>(offset) * esize,
                  updates.as<const uint8_t>() + static_cast<size_t>(t * slice) * esize,
                  static_cast<size_t>(slice) * esize);
      continue;
    }
    const bool ok = scatter_reduce_bytes(
        data.dtype, out.as<uint8_t>() + static_cast<size_t>(offset) * esize,
        updates.as<const uint8_t>() + static_cast<size_t>(t * slice) * esize, slice, reduction);
    if (!ok) {
      ctx.fail(ErrorCode::kUnsupported, "reduction '", reduction, "' is not supported for ",
               dtype_name(data.dtype));
    }
  }
}

// ---- ScatterElements ------------------------------------------------------------------------

void scatter_elements_kernel(KernelContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& updates = ctx.inputs[2];
  const TensorView& out = ctx.outputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), data.shape.size());
  const std::string reduction = ctx.attrs.get_string_or("reduction", "none");
  if (updates.shape != indices.shape) {
    ctx.fail(ErrorCode::kInvalidArgument, "updates has shape ", shape_to_string(updates.shape), " but indices has ",
             shape_to_string(indices.shape));
  }
  for (size_t d = 0; d < data.shape.size(); ++d) {
    if (d != axis && indices.shape[d] > data.shape[d]) {
      ctx.fail(ErrorCode::kInvalidArgument, "indices shape ", shape_to_string(indices.shape), " exceeds data shape ",
               shape_to_string(data.shape), " outside axis ", axis);
    }
  }
  if (data.nbytes() > 0) std::memcpy(out.data, data.data, data.nbytes());
  const std::vector<int64_t> idx = read_indices(indices);
  const std::vector<int64_t> data_strides = dense_strides(data.shape);
  const size_t rank = indices.shape.size();
  const int64_t dim = data.shape[axis];
  const size_t esize = dtype_size(data.dtype);
  std::vector<int64_t> coordinate(rank, 0);
  for (size_t i = 0; i < idx.size(); ++i) {
    int64_t index = idx[i];
    if (index < -dim || index >= dim) {
      ctx.fail(ErrorCode::kInvalidArgument, "index ", index, " (element ", i, " of the indices) is out of range for axis ",
               axis, " of size ", dim);
    }
    if (index < 0) index += dim;
    int64_t offset = 0;
    for (size_t d = 0; d < rank; ++d) offset += (d == axis ? index : coordinate[d]) * data_strides[d];
    if (reduction == "none") {
      std::memcpy(out.as<uint8_t>() + static_cast<size_t>(offset) * esize, updates.as<const uint8_t>() + i * esize, esize);
    } else {
      const bool ok =
          scatter_reduce_bytes(data.dtype, out.as<uint8_t>() + static_cast<size_t>(offset) * esize,
                               updates.as<const uint8_t>() + i * esize, 1, reduction);
      if (!ok) ctx.fail(ErrorCode::kUnsupported, "reduction '", reduction, "' is not supported for ", dtype_name(data.dtype));
    }
    for (size_t d = rank; d-- > 0;) {  // the next coordinate of the indices, row-major
      if (++coordinate[d] < indices.shape[d]) break;
      coordinate[d] = 0;
    }
  }
}

// ---- ReverseSequence ------------------------------------------------------------------------

void reverse_sequence_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const size_t batch_axis = static_cast<size_t>(ctx.attrs.get_int_or("batch_axis", 1));
  const size_t time_axis = static_cast<size_t>(ctx.attrs.get_int_or("time_axis", 0));
  const int64_t batch = in.shape[batch_axis], steps = in.shape[time_axis];
  const std::vector<int64_t> lens = read_indices(ctx.inputs[1]);
  if (static_cast<int64_t>(lens.size()) != batch) {
    ctx.fail(ErrorCode::kInvalidArgument, "sequence_lens has ", lens.size(), " entries for a batch of ", batch);
  }
  if (in.nbytes() > 0) std::memcpy(out.data, in.data, in.nbytes());
  const std::vector<int64_t> strides = dense_strides(in.shape);
  const int64_t inner = product(in.shape, 2, in.shape.size());  // the dims after both axes, contiguous
  const size_t bytes = static_cast<size_t>(inner) * dtype_size(in.dtype);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = lens[static_cast<size_t>(b)];
    if (length < 0 || length > steps) {
      ctx.fail(ErrorCode::kInvalidArgument, "sequence_lens[", b, "] = ", length, " is outside [0, ", steps, "]");
    }
    for (int64_t t = 0; t < length; ++t) {
      const int64_t from = b * strides[batch_axis] + t * strides[time_axis];
      const int64_t to = b * strides[batch_axis] + (length - 1 - t) * strides[time_axis];
      std::memcpy(out.as<uint8_t>() + static_cast<size_t>(to) * dtype_size(in.dtype),
                  in.as<const uint8_t>() + static_cast<size_t>(from) * dtype_size(in.dtype), bytes);
    }
  }
}

void trilu_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const bool upper = ctx.attrs.get_int_or("upper", 1) != 0;
  const int64_t k = present(ctx, 1) && ctx.inputs[1].numel() > 0 ? read_index(ctx.inputs[1], 0) : 0;
  const size_t rank = in.shape.size();
  const int64_t rows = in.shape[rank - 2], cols = in.shape[rank - 1];
  const int64_t batches = product(in.shape, 0, rank - 2);
  const size_t esize = dtype_size(in.dtype);
  const auto* src = in.as<const uint8_t>();
  auto* dst = out.as<uint8_t>();
  if (out.nbytes() > 0) std::memset(dst, 0, out.nbytes());
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      // Kept columns: c - r >= k (upper) or c - r <= k (lower).
      int64_t first = upper ? std::max<int64_t>(r + k, 0) : 0;
      int64_t last = upper ? cols : std::min<int64_t>(r + k + 1, cols);
      if (first >= last) continue;
      const auto at = static_cast<size_t>((b * rows + r) * cols + first) * esize;
      std::memcpy(dst + at, src + at, static_cast<size_t>(last - first) * esize);
    }
  }
}

}  // namespace

void register_data_movement_kernels(CpuKernelRegistry& registry) {
  registry.add("Transpose", {transpose_kernel, false});
  registry.add("Concat", {concat_kernel, false});
  registry.add("Split", {split_kernel, false});
  registry.add("Slice", {slice_kernel, false});
  registry.add("Gather", {gather_kernel, false});
  registry.add("GatherElements", {gather_elements_kernel, false});
  registry.add("GatherND", {gather_nd_kernel, false});
  registry.add("Pad", {pad_kernel, false});
  registry.add("ScatterND", {scatter_nd_kernel, false});
  registry.add("ScatterElements", {scatter_elements_kernel, false});
  registry.add("ReverseSequence", {reverse_sequence_kernel, false});
  registry.add("Trilu", {trilu_kernel, false});
}

}  // namespace kiln::cpu
