// Data movement op family on CUDA: Transpose, Concat, Split, Slice, Gather, GatherElements,
// GatherND, Pad, Tile, Expand, Trilu and ScatterND. Elements are moved as raw 1/2/4/8-byte words
// (wider when sizes and alignment allow), so every dtype is handled. Semantics follow the CPU
// kernels (src/backends/cpu/{data_movement,shape}_kernels.cpp). A kernel cannot throw: an index
// read from device memory that is out of range makes Gather/GatherElements write zero for that
// element, GatherND write zeros for that whole slice, and ScatterND skip that update (the CPU
// backend raises an error instead).
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>

#include "backends/cuda/dm_common.cuh"
#include "backends/cuda/strided_copy.cuh"
#include "ops/tensor_op_utils.hpp"

namespace kiln::cuda {
namespace {

using dm::dims_product;
using dm::normalized_axis;

ops::NodeRef node_of(const LaunchContext& ctx) {
  return ops::NodeRef{ctx.node_name, ctx.op};
}

// ---- Transpose ----

void launch_transpose(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const size_t rank = in.shape.size();
  std::vector<int64_t> perm(rank);
  for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(rank - 1 - i);
  if (ctx.attrs.has("perm")) perm = ctx.attrs.get_ints("perm");
  if (perm.size() != rank) {
    ctx.fail(ErrorCode::kInvalidArgument, "attribute 'perm' has ", perm.size(),
             " entries but the input has rank ", rank);
  }
  const std::vector<int64_t> in_strides = dm::dense_strides(in.shape);
  std::vector<int64_t> strides(rank);
  Shape expected(rank);
  for (size_t i = 0; i < rank; ++i) {
    if (perm[i] < 0 || perm[i] >= static_cast<int64_t>(rank)) {
      ctx.fail(ErrorCode::kInvalidArgument, "attribute 'perm' is not a permutation");
    }
    strides[i] = in_strides[static_cast<size_t>(perm[i])];
    expected[i] = in.shape[static_cast<size_t>(perm[i])];
  }
  dm::require_output_shape(ctx, 0, expected);
  launch_strided_copy(ctx, in.data, out.data, dtype_size(in.dtype), out.shape, strides);
}

// ---- Concat and Split ----
// Both view the concatenated tensor as rows (the dims before `axis`) of columns (axis and after);
// each part owns a contiguous band of columns. One launch handles up to kMaxParts parts.

constexpr int kMaxParts = 32;

struct PartBands {
  int count = 0;
  int64_t row_words = 0;         // words per row of the concatenated tensor
  int64_t first_column = 0;      // first column of the band this launch covers
  int64_t width = 0;             // columns this launch covers
  int64_t begin[kMaxParts + 1];  // part p covers columns [begin[p], begin[p + 1]) of the band
  void* data[kMaxParts];
};

// kConcat: whole[row, col] = part[row, col - begin]; otherwise the reverse (Split).
template <typename Word, typename Index, bool kConcat>
__global__ void concat_split_kernel(std::conditional_t<kConcat, Word*, const Word*> whole, Index n,
                                    dm::Divider<Index> width, PartBands p) {
  KILN_DM_GRID_STRIDE(i, Index, n) {
    const Index row = width.div(i);
    const Index col = i - row * static_cast<Index>(width.divisor);
    int lo = 0;
    int hi = p.count - 1;
    while (lo < hi) {  // the last part whose band starts at or before `col`
      const int mid = (lo + hi + 1) / 2;
      if (p.begin[mid] <= static_cast<int64_t>(col)) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    const int64_t part_width = p.begin[lo + 1] - p.begin[lo];
    const int64_t part_offset = static_cast<int64_t>(row) * part_width + (col - p.begin[lo]);
    const int64_t whole_offset = static_cast<int64_t>(row) * p.row_words + p.first_column + col;
    if constexpr (kConcat) {
      whole[whole_offset] = static_cast<const Word*>(p.data[lo])[part_offset];
    } else {
      static_cast<Word*>(p.data[lo])[part_offset] = whole[whole_offset];
    }
  }
}

struct Part {
  void* data;
  uint64_t column_bytes;
  uint64_t width_bytes;
};

// `whole` is Concat's output or Split's input; parts are in column order.
void launch_concat_split(const LaunchContext& ctx, bool concat, const TensorView& whole,
                         size_t axis, const std::vector<Part>& all_parts) {
  if (whole.numel() == 0) return;
  const size_t esize = dtype_size(whole.dtype);
  const int64_t rows = dims_product(whole.shape, 0, axis);
  const auto row_bytes =
      static_cast<uint64_t>(dims_product(whole.shape, axis, whole.shape.size())) * esize;
  std::vector<Part> parts;
  uint64_t bits = row_bytes | dm::address_of(whole.data);
  for (const Part& part : all_parts) {
    if (part.width_bytes == 0) continue;
    parts.push_back(part);
    bits |= part.column_bytes | part.width_bytes | dm::address_of(part.data);
  }
  const size_t word = dm::common_word_size({bits});
  for (size_t first = 0; first < parts.size(); first += kMaxParts) {
    const size_t count = std::min<size_t>(kMaxParts, parts.size() - first);
    PartBands p{};
    p.count = static_cast<int>(count);
    p.row_words = static_cast<int64_t>(row_bytes / word);
    p.first_column = static_cast<int64_t>(parts[first].column_bytes / word);
    for (size_t k = 0; k < count; ++k) {
      const Part& part = parts[first + k];
      p.begin[k] = static_cast<int64_t>(part.column_bytes / word) - p.first_column;
      p.begin[k + 1] = p.begin[k] + static_cast<int64_t>(part.width_bytes / word);
      p.data[k] = part.data;
    }
    p.width = p.begin[count];
    const int64_t n = rows * p.width;
    dm::dispatch_word(ctx, word, [&]<typename Word>() {
      dm::dispatch_index(n, [&]<typename Index>() {
        const auto width = dm::Divider<Index>::make(p.width);
        if (concat) {
          concat_split_kernel<Word, Index, true><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
              whole.as<Word>(), static_cast<Index>(n), width, p);
        } else {
          concat_split_kernel<Word, Index, false><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
              whole.as<const Word>(), static_cast<Index>(n), width, p);
        }
      });
    });
    check_launch(ctx);
  }
}

void launch_concat(LaunchContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int("axis"), out.shape.size());
  const size_t esize = dtype_size(out.dtype);
  const auto inner_bytes =
      static_cast<uint64_t>(dims_product(out.shape, axis + 1, out.shape.size())) * esize;
  std::vector<Part> parts;
  uint64_t column = 0;
  for (const TensorView& in : ctx.inputs) {
    const uint64_t width = static_cast<uint64_t>(in.shape[axis]) * inner_bytes;
    parts.push_back(Part{in.data, column, width});
    column += width;
  }
  if (column != static_cast<uint64_t>(out.shape[axis]) * inner_bytes) {
    ctx.fail(ErrorCode::kInternal, "the inputs do not add up to the output along axis ", axis);
  }
  launch_concat_split(ctx, true, out, axis, parts);
}

void launch_split(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), in.shape.size());
  std::optional<std::vector<int64_t>> split;
  if (ctx.has_input(1)) split = dm::host_indices(ctx, 1, "split");
  const std::vector<int64_t> sizes =
      ops::resolve_split_sizes(node_of(ctx), in.shape[axis], split,
                               ctx.attrs.get_int_or("num_outputs", 0), ctx.outputs.size());
  const size_t esize = dtype_size(in.dtype);
  const auto inner_bytes =
      static_cast<uint64_t>(dims_product(in.shape, axis + 1, in.shape.size())) * esize;
  std::vector<Part> parts;
  uint64_t column = 0;
  for (size_t i = 0; i < ctx.outputs.size(); ++i) {
    Shape expected = in.shape;
    expected[axis] = sizes[i];
    dm::require_output_shape(ctx, i, expected);
    const uint64_t width = static_cast<uint64_t>(sizes[i]) * inner_bytes;
    parts.push_back(Part{ctx.outputs[i].data, column, width});
    column += width;
  }
  launch_concat_split(ctx, false, in, axis, parts);
}

// ---- Slice ----

void launch_slice(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const std::vector<int64_t> starts = dm::host_indices(ctx, 1, "starts");
  const std::vector<int64_t> ends = dm::host_indices(ctx, 2, "ends");
  const std::vector<int64_t> axes_given =
      ctx.has_input(3) ? dm::host_indices(ctx, 3, "axes") : std::vector<int64_t>{};
  const std::vector<int64_t> steps =
      ctx.has_input(4) ? dm::host_indices(ctx, 4, "steps") : std::vector<int64_t>(starts.size(), 1);
  const ops::SliceGeometry g =
      ops::resolve_slice(ops::NodeRef{ctx.node_name, ctx.op}, in.shape, starts, ends, axes_given, steps);
  dm::require_output_shape(ctx, 0, g.output);
  launch_strided_copy(ctx, in.data, out.data, dtype_size(in.dtype), out.shape, g.strides, g.offset);
}

// ---- Expand and Tile ----

void launch_expand(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.shape.size() < in.shape.size()) {
    ctx.fail(ErrorCode::kInternal, "output rank ", out.shape.size(), " < input rank ",
             in.shape.size());
  }
  const std::vector<int64_t> in_strides = dm::dense_strides(in.shape);
  const size_t lead = out.shape.size() - in.shape.size();
  std::vector<int64_t> strides(out.shape.size(), 0);
  for (size_t i = 0; i < in.shape.size(); ++i) {
    if (in.shape[i] == out.shape[lead + i]) {
      strides[lead + i] = in_strides[i];
    } else if (in.shape[i] != 1) {
      ctx.fail(ErrorCode::kInvalidArgument, "cannot expand ", shape_to_string(in.shape), " to ",
               shape_to_string(out.shape));
    }
  }
  launch_strided_copy(ctx, in.data, out.data, dtype_size(in.dtype), out.shape, strides);
}

// Tile reads the output as [r0, d0, r1, d1, ...]: the repeat dims have input stride 0.
void launch_tile(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.shape.size() != in.shape.size()) {
    ctx.fail(ErrorCode::kInternal, "output rank differs from the input rank");
  }
  if (out.numel() == 0) return;
  const std::vector<int64_t> in_strides = dm::dense_strides(in.shape);
  Shape loop_shape;
  std::vector<int64_t> strides;
  for (size_t i = 0; i < in.shape.size(); ++i) {
    const int64_t repeats = in.shape[i] == 0 ? 0 : out.shape[i] / in.shape[i];
    if (repeats * in.shape[i] != out.shape[i]) {
      ctx.fail(ErrorCode::kInternal, "output dim ", i, " is not a multiple of the input dim");
    }
    loop_shape.push_back(repeats);
    strides.push_back(0);
    loop_shape.push_back(in.shape[i]);
    strides.push_back(in_strides[i]);
  }
  launch_strided_copy(ctx, in.data, out.data, dtype_size(in.dtype), loop_shape, strides);
}

// ---- Gather ----

// out[o, j, c] = data[o, indices[j], c] over words; out-of-range indices give zero.
template <typename Word, typename IndexT, typename Index>
__global__ void gather_kernel(const Word* __restrict__ data, const IndexT* __restrict__ indices,
                              Word* __restrict__ out, Index n, dm::Divider<Index> inner,
                              dm::Divider<Index> count, int64_t axis_dim) {
  KILN_DM_GRID_STRIDE(i, Index, n) {
    const Index q = inner.div(i);
    const Index c = i - q * static_cast<Index>(inner.divisor);
    const Index o = count.div(q);
    const Index j = q - o * static_cast<Index>(count.divisor);
    int64_t index = static_cast<int64_t>(indices[j]);
    if (index < 0) index += axis_dim;
    if (index < 0 || index >= axis_dim) {
      out[i] = Word{};
    } else {
      const int64_t row = static_cast<int64_t>(o) * axis_dim + index;
      out[i] = data[row * static_cast<int64_t>(inner.divisor) + static_cast<int64_t>(c)];
    }
  }
}

template <typename F>
void dispatch_index_dtype(const LaunchContext& ctx, DType dtype, F&& f) {
  switch (dtype) {
    case DType::kInt64:
      f.template operator()<int64_t>();
      return;
    case DType::kInt32:
      f.template operator()<int32_t>();
      return;
    default:
      ctx.fail(ErrorCode::kInvalidArgument, "indices must be int32 or int64, got ",
               dtype_name(dtype));
  }
}

void launch_gather(LaunchContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), data.shape.size());
  const int64_t n_elements = out.numel();
  if (n_elements == 0) return;
  const size_t esize = dtype_size(data.dtype);
  const int64_t inner_elements = dims_product(data.shape, axis + 1, data.shape.size());
  const int64_t count = indices.numel();
  const int64_t axis_dim = data.shape[axis];
  if (n_elements != dims_product(data.shape, 0, axis) * count * inner_elements) {
    ctx.fail(ErrorCode::kInternal, "output shape ", shape_to_string(out.shape),
             " does not match the inputs");
  }
  const size_t word = dm::common_word_size({static_cast<uint64_t>(inner_elements) * esize,
                                            dm::address_of(data.data) | dm::address_of(out.data)});
  const int64_t inner = inner_elements * static_cast<int64_t>(esize) / static_cast<int64_t>(word);
  const int64_t n = n_elements * static_cast<int64_t>(esize) / static_cast<int64_t>(word);
  dispatch_index_dtype(ctx, indices.dtype, [&]<typename IndexT>() {
    dm::dispatch_word(ctx, word, [&]<typename Word>() {
      dm::dispatch_index(n, [&]<typename Index>() {
        gather_kernel<Word, IndexT, Index><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
            data.as<const Word>(), indices.as<const IndexT>(), out.as<Word>(),
            static_cast<Index>(n), dm::Divider<Index>::make(inner), dm::Divider<Index>::make(count),
            axis_dim);
      });
    });
  });
  check_launch(ctx);
}

// ---- GatherElements ----

struct GatherElementsDims {
  int rank = 0;
  int64_t dims[kMaxRank];          // of the indices (= output)
  int64_t data_strides[kMaxRank];  // 0 along the axis
  int64_t axis_stride = 0;
  int64_t axis_dim = 0;
};

template <typename Word, typename IndexT>
__global__ void gather_elements_kernel(const Word* __restrict__ data,
                                       const IndexT* __restrict__ indices, Word* __restrict__ out,
                                       int64_t n, GatherElementsDims p) {
  KILN_DM_GRID_STRIDE(i, int64_t, n) {
    int64_t rest = i;
    int64_t offset = 0;
    for (int d = p.rank - 1; d >= 0; --d) {
      const int64_t coord = rest % p.dims[d];
      rest /= p.dims[d];
      offset += coord * p.data_strides[d];
    }
    int64_t index = static_cast<int64_t>(indices[i]);
    if (index < 0) index += p.axis_dim;
    out[i] = (index < 0 || index >= p.axis_dim) ? Word{} : data[offset + index * p.axis_stride];
  }
}

void launch_gather_elements(LaunchContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const size_t rank = data.shape.size();
  const size_t axis = normalized_axis(ctx, ctx.attrs.get_int_or("axis", 0), rank);
  if (indices.shape.size() != rank) {
    ctx.fail(ErrorCode::kInvalidArgument, "indices has rank ", indices.shape.size(),
             " but data has rank ", rank);
  }
  for (size_t i = 0; i < rank; ++i) {
    if (i != axis && indices.shape[i] > data.shape[i]) {
      ctx.fail(ErrorCode::kInvalidArgument, "indices shape ", shape_to_string(indices.shape),
               " exceeds data shape ", shape_to_string(data.shape), " outside axis ", axis);
    }
  }
  if (rank > static_cast<size_t>(kMaxRank)) {
    ctx.fail(ErrorCode::kUnsupported, "rank ", rank, " > ", kMaxRank);
  }
  dm::require_output_shape(ctx, 0, indices.shape);
  const int64_t n = out.numel();
  if (n == 0) return;
  GatherElementsDims p{};
  p.rank = static_cast<int>(rank);
  const std::vector<int64_t> strides = dm::dense_strides(data.shape);
  for (size_t d = 0; d < rank; ++d) {
    p.dims[d] = indices.shape[d];
    p.data_strides[d] = d == axis ? 0 : strides[d];
  }
  p.axis_stride = strides[axis];
  p.axis_dim = data.shape[axis];
  dispatch_index_dtype(ctx, indices.dtype, [&]<typename IndexT>() {
    dm::dispatch_word(ctx, dtype_size(data.dtype), [&]<typename Word>() {
      gather_elements_kernel<Word, IndexT><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
          data.as<const Word>(), indices.as<const IndexT>(), out.as<Word>(), n, p);
    });
  });
  check_launch(ctx);
}

// ---- GatherND ----
// Output = tuples (batch dims, then indices.shape[batch_dims:-1]) of slices (data.shape[batch_dims
// + k:]); a tuple's k indices pick one slice of its batch. One thread per output word; the
// threads of one slice read the same k indices (served by the cache). Data offsets are counted in
// slices since every stride of the indexed dims is a multiple of the slice size.

struct GatherNDParams {
  int k = 0;                        // index tuple length
  int64_t dims[kMaxRank];           // data dims batch_dims .. batch_dims + k - 1
  int64_t slice_strides[kMaxRank];  // their strides, in slices
  int64_t batch_stride = 0;         // slices per batch of data
};

template <typename Word, typename IndexT, typename Index>
__global__ void gather_nd_kernel(const Word* __restrict__ data, const IndexT* __restrict__ indices,
                                 Word* __restrict__ out, Index n, dm::Divider<Index> slice_words,
                                 dm::Divider<Index> tuples_per_batch, GatherNDParams p) {
  KILN_DM_GRID_STRIDE(i, Index, n) {
    const Index tuple = slice_words.div(i);
    const Index c = i - tuple * static_cast<Index>(slice_words.divisor);
    const Index batch = tuples_per_batch.div(tuple);
    const IndexT* tuple_indices = indices + static_cast<int64_t>(tuple) * p.k;
    int64_t slice = static_cast<int64_t>(batch) * p.batch_stride;
    bool in_range = true;
    for (int j = 0; j < p.k; ++j) {
      int64_t index = static_cast<int64_t>(tuple_indices[j]);
      if (index < 0) index += p.dims[j];
      in_range = in_range && index >= 0 && index < p.dims[j];
      slice += index * p.slice_strides[j];
    }
    out[i] = in_range
                 ? data[slice * static_cast<int64_t>(slice_words.divisor) + static_cast<int64_t>(c)]
                 : Word{};
  }
}

void launch_gather_nd(LaunchContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const ops::GatherNdGeometry geometry = ops::resolve_gather_nd(
      ops::NodeRef{ctx.node_name, ctx.op}, data.shape, indices.shape, ctx.attrs.get_int_or("batch_dims", 0));
  const size_t batch_dims = geometry.batch_dims;
  const size_t k = geometry.tuple_length;
  const size_t data_rank = data.shape.size();
  const size_t indices_rank = indices.shape.size();
  if (k > static_cast<size_t>(kMaxRank)) {
    ctx.fail(ErrorCode::kUnsupported, "index tuples of length ", k, " > ", kMaxRank);
  }
  dm::require_output_shape(ctx, 0, geometry.output);
  const int64_t n_elements = out.numel();
  if (n_elements == 0) return;
  const size_t esize = dtype_size(data.dtype);
  const int64_t slice_elements = dims_product(data.shape, batch_dims + k, data_rank);
  const int64_t tuples_per_batch = dims_product(indices.shape, batch_dims, indices_rank - 1);
  GatherNDParams p{};
  p.k = static_cast<int>(k);
  for (size_t j = 0; j < k; ++j) {
    p.dims[j] = data.shape[batch_dims + j];
    p.slice_strides[j] = dims_product(data.shape, batch_dims + j + 1, data_rank) / slice_elements;
  }
  p.batch_stride = dims_product(data.shape, batch_dims, data_rank) / slice_elements;
  const size_t word = dm::common_word_size({static_cast<uint64_t>(slice_elements) * esize,
                                            dm::address_of(data.data) | dm::address_of(out.data)});
  const int64_t slice_words =
      slice_elements * static_cast<int64_t>(esize) / static_cast<int64_t>(word);
  const int64_t n = n_elements * static_cast<int64_t>(esize) / static_cast<int64_t>(word);
  dispatch_index_dtype(ctx, indices.dtype, [&]<typename IndexT>() {
    dm::dispatch_word(ctx, word, [&]<typename Word>() {
      dm::dispatch_index(n, [&]<typename Index>() {
        gather_nd_kernel<Word, IndexT, Index><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
            data.as<const Word>(), indices.as<const IndexT>(), out.as<Word>(),
            static_cast<Index>(n), dm::Divider<Index>::make(slice_words),
            dm::Divider<Index>::make(tuples_per_batch), p);
      });
    });
  });
  check_launch(ctx);
}

// ---- Pad ----

enum class PadMode : int { kConstant, kEdge, kWrap, kReflect };

struct PadDims {
  int rank = 0;
  PadMode mode = PadMode::kConstant;
  int64_t in_dims[kMaxRank];
  int64_t in_strides[kMaxRank];
  int64_t begins[kMaxRank];
};

// `constant_value` (device) overrides `constant` when given.
template <typename Word, typename Index>
__global__ void pad_kernel(const Word* __restrict__ in, Word* __restrict__ out, Index n, PadDims p,
                           dm::DimDividers<Index> out_dims, Word constant,
                           const Word* constant_value) {
  const Word fill = constant_value != nullptr ? *constant_value : constant;
  KILN_DM_GRID_STRIDE(i, Index, n) {
    Index rest = i;
    int64_t offset = 0;
    bool inside = true;
    for (int d = p.rank - 1; d >= 0; --d) {
      const Index quotient = out_dims.dims[d].div(rest);
      const Index coord = rest - quotient * static_cast<Index>(out_dims.dims[d].divisor);
      rest = quotient;
      const int64_t in_dim = p.in_dims[d];
      int64_t source = static_cast<int64_t>(coord) - p.begins[d];
      if (source < 0 || source >= in_dim) {
        switch (p.mode) {
          case PadMode::kConstant:
            inside = false;
            break;
          case PadMode::kEdge:
            source = source < 0 ? 0 : in_dim - 1;
            break;
          case PadMode::kWrap:
            source = ((source % in_dim) + in_dim) % in_dim;
            break;
          case PadMode::kReflect:
            source = source < 0 ? -source : 2 * (in_dim - 1) - source;
            break;
        }
      }
      offset += source * p.in_strides[d];
    }
    out[i] = inside ? in[offset] : fill;
  }
}

void launch_pad(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const size_t rank = in.shape.size();
  const std::string mode_name = ctx.attrs.get_string_or("mode", "constant");
  PadDims p{};
  if (mode_name == "constant") {
    p.mode = PadMode::kConstant;
  } else if (mode_name == "edge") {
    p.mode = PadMode::kEdge;
  } else if (mode_name == "wrap") {
    p.mode = PadMode::kWrap;
  } else if (mode_name == "reflect") {
    p.mode = PadMode::kReflect;
  } else {
    ctx.fail(ErrorCode::kInvalidArgument,
             "attribute 'mode' must be constant, reflect, edge or "
             "wrap, got '",
             mode_name, "'");
  }
  const std::vector<int64_t> axes =
      ctx.has_input(3) ? dm::host_indices(ctx, 3, "axes") : std::vector<int64_t>{};
  const std::vector<int64_t> pads = ops::resolve_pads(
      node_of(ctx), dm::host_indices(ctx, 1, "pads"), axes, static_cast<int64_t>(rank));
  if (rank > static_cast<size_t>(kMaxRank)) {
    ctx.fail(ErrorCode::kUnsupported, "rank ", rank, " > ", kMaxRank);
  }
  Shape expected = in.shape;
  const std::vector<int64_t> in_strides = dm::dense_strides(in.shape);
  p.rank = static_cast<int>(rank);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t begin = pads[d];
    const int64_t end = pads[d + rank];
    expected[d] += begin + end;
    if (expected[d] < 0)
      ctx.fail(ErrorCode::kInvalidArgument, "pads make dimension ", d, " negative");
    if (p.mode != PadMode::kConstant && expected[d] > 0 && in.shape[d] == 0) {
      ctx.fail(ErrorCode::kInvalidArgument, mode_name, " padding of an empty dimension ", d);
    }
    if (p.mode == PadMode::kReflect && (begin >= in.shape[d] || end >= in.shape[d]) &&
        (begin > 0 || end > 0)) {
      ctx.fail(ErrorCode::kInvalidArgument, "reflect pads must be smaller than dimension ", d,
               " of size ", in.shape[d]);
    }
    p.in_dims[d] = in.shape[d];
    p.in_strides[d] = in_strides[d];
    p.begins[d] = begin;
  }
  dm::require_output_shape(ctx, 0, expected);
  const int64_t n = out.numel();
  if (n == 0) return;
  const size_t esize = dtype_size(in.dtype);
  uint8_t constant_bytes[16] = {};  // zero in every dtype
  const void* constant_device = nullptr;
  if (p.mode == PadMode::kConstant && ctx.has_input(2) && ctx.inputs[2].numel() > 0) {
    if (const HostTensor* host = dm::host_input_or_null(ctx, 2)) {
      std::memcpy(constant_bytes, host->bytes.data(), esize);
    } else {
      constant_device = ctx.inputs[2].data;
    }
  }
  dm::dispatch_word(ctx, esize, [&]<typename Word>() {
    Word constant{};
    std::memcpy(&constant, constant_bytes, sizeof(Word));
    const auto* constant_ptr = static_cast<const Word*>(constant_device);
    dm::dispatch_index(n, [&]<typename Index>() {
      pad_kernel<Word, Index><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
          in.as<const Word>(), out.as<Word>(), static_cast<Index>(n), p,
          dm::make_dividers<Index>(out.shape), constant, constant_ptr);
    });
  });
  check_launch(ctx);
}

// ---- Trilu ----

// Keeps element (r, c) when c - r >= k (upper) or c - r <= k (lower); zero elsewhere. k is read
// from device memory when its value is not known on the host.
template <typename Word>
__global__ void trilu_kernel(const Word* __restrict__ in, Word* __restrict__ out, int64_t n,
                             int64_t rows, int64_t cols, bool upper, int64_t k,
                             const void* k_device, bool k_is_int64) {
  if (k_device != nullptr) {
    k = k_is_int64 ? *static_cast<const int64_t*>(k_device)
                   : static_cast<int64_t>(*static_cast<const int32_t*>(k_device));
  }
  KILN_DM_GRID_STRIDE(i, int64_t, n) {
    const int64_t q = i / cols;
    const int64_t c = i - q * cols;
    const int64_t r = q % rows;
    const int64_t diagonal = c - r;
    const bool keep = upper ? diagonal >= k : diagonal <= k;
    out[i] = keep ? in[i] : Word{};
  }
}

void launch_trilu(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const size_t rank = in.shape.size();
  if (rank < 2) ctx.fail(ErrorCode::kInvalidArgument, "input must have rank >= 2");
  const bool upper = ctx.attrs.get_int_or("upper", 1) != 0;
  int64_t k = 0;
  const void* k_device = nullptr;
  bool k_is_int64 = true;
  if (ctx.has_input(1) && ctx.inputs[1].numel() > 0) {
    const TensorView& k_view = ctx.inputs[1];
    if (k_view.dtype != DType::kInt64 && k_view.dtype != DType::kInt32) {
      ctx.fail(ErrorCode::kInvalidArgument, "k must be int32 or int64, got ",
               dtype_name(k_view.dtype));
    }
    if (const HostTensor* host = dm::host_input_or_null(ctx, 1)) {
      k = read_index(view_of(*host), 0);
    } else {
      k_device = k_view.data;
      k_is_int64 = k_view.dtype == DType::kInt64;
    }
  }
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t rows = in.shape[rank - 2];
  const int64_t cols = in.shape[rank - 1];
  dm::dispatch_word(ctx, dtype_size(in.dtype), [&]<typename Word>() {
    trilu_kernel<Word><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
        in.as<const Word>(), out.as<Word>(), n, rows, cols, upper, k, k_device, k_is_int64);
  });
  check_launch(ctx);
}

// ---- ScatterND ----

enum class Reduction : int { kNone, kAdd, kMul, kMax, kMin };

struct ScatterDims {
  int k = 0;  // index tuple length
  int64_t dims[kMaxRank];
  int64_t strides[kMaxRank];
  int64_t slice = 1;  // elements per update slice
};

template <typename T>
__device__ __forceinline__ T reduce_values(Reduction reduction, T current, T update) {
  if constexpr (std::is_integral_v<T>) {
    // Wraps on overflow like the CPU kernel (computed unsigned).
    using Wide = std::make_unsigned_t<T>;
    switch (reduction) {
      case Reduction::kAdd:
        return static_cast<T>(static_cast<Wide>(current) + static_cast<Wide>(update));
      case Reduction::kMul:
        return static_cast<T>(static_cast<Wide>(current) * static_cast<Wide>(update));
      case Reduction::kMax:
        return current < update ? update : current;
      case Reduction::kMin:
        return update < current ? update : current;
      default:
        return update;
    }
  } else {
    switch (reduction) {
      case Reduction::kAdd:
        return current + update;
      case Reduction::kMul:
        return current * update;
      case Reduction::kMax:
        return current < update ? update : current;
      case Reduction::kMin:
        return update < current ? update : current;
      default:
        return update;
    }
  }
}

// Atomic read-modify-write of one element through compare-and-swap on its bits.
template <typename T>
__device__ void atomic_reduce(T* target, T update, Reduction reduction) {
  using Bits = std::conditional_t<sizeof(T) == 8, unsigned long long, unsigned int>;
  static_assert(sizeof(T) == sizeof(Bits));
  auto* address = reinterpret_cast<Bits*>(target);
  Bits observed = *address;
  while (true) {
    T current;
    memcpy(&current, &observed, sizeof(T));
    const T next = reduce_values(reduction, current, update);
    Bits next_bits;
    memcpy(&next_bits, &next, sizeof(T));
    const Bits previous = atomicCAS(address, observed, next_bits);
    if (previous == observed) return;
    observed = previous;
  }
}

// Element e of update slice t goes to the data offset its index tuple names; tuples with an
// out-of-range index are skipped.
template <typename T, typename IndexT>
__global__ void scatter_nd_kernel(const IndexT* __restrict__ indices, const T* __restrict__ updates,
                                  T* __restrict__ out, int64_t n, ScatterDims p,
                                  Reduction reduction) {
  KILN_DM_GRID_STRIDE(i, int64_t, n) {
    const int64_t t = i / p.slice;
    const int64_t e = i - t * p.slice;
    int64_t offset = 0;
    bool valid = true;
    for (int j = 0; j < p.k; ++j) {
      int64_t index = static_cast<int64_t>(indices[t * p.k + j]);
      if (index < 0) index += p.dims[j];
      valid &= index >= 0 && index < p.dims[j];
      offset += index * p.strides[j];
    }
    if (!valid) continue;
    if constexpr (sizeof(T) == 4 || sizeof(T) == 8) {
      if (reduction != Reduction::kNone) {
        atomic_reduce(out + offset + e, updates[i], reduction);
        continue;
      }
    }
    out[offset + e] = updates[i];
  }
}

void launch_scatter_nd(LaunchContext& ctx) {
  const TensorView& data = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& updates = ctx.inputs[2];
  const TensorView& out = ctx.outputs[0];
  const std::string reduction_name = ctx.attrs.get_string_or("reduction", "none");
  Reduction reduction = Reduction::kNone;
  if (reduction_name == "add") {
    reduction = Reduction::kAdd;
  } else if (reduction_name == "mul") {
    reduction = Reduction::kMul;
  } else if (reduction_name == "max") {
    reduction = Reduction::kMax;
  } else if (reduction_name == "min") {
    reduction = Reduction::kMin;
  } else if (reduction_name != "none") {
    ctx.fail(ErrorCode::kInvalidArgument,
             "attribute 'reduction' must be none, add, mul, max or "
             "min, got '",
             reduction_name, "'");
  }
  if (indices.shape.empty()) ctx.fail(ErrorCode::kInvalidArgument, "indices must have rank >= 1");
  const int64_t k = indices.shape.back();
  if (k < 1 || k > static_cast<int64_t>(data.shape.size())) {
    ctx.fail(ErrorCode::kInvalidArgument, "indices' last dimension is ", k, "; expected 1..",
             data.shape.size());
  }
  if (data.shape.size() > static_cast<size_t>(kMaxRank)) {
    ctx.fail(ErrorCode::kUnsupported, "rank ", data.shape.size(), " > ", kMaxRank);
  }
  const int64_t tuples = dims_product(indices.shape, 0, indices.shape.size() - 1);
  ScatterDims p{};
  p.k = static_cast<int>(k);
  p.slice = dims_product(data.shape, static_cast<size_t>(k), data.shape.size());
  if (updates.numel() != tuples * p.slice) {
    ctx.fail(ErrorCode::kInvalidArgument, "updates has ", updates.numel(), " elements; expected ",
             tuples * p.slice);
  }
  const std::vector<int64_t> strides = dm::dense_strides(data.shape);
  for (size_t j = 0; j < static_cast<size_t>(k); ++j) {
    p.dims[j] = data.shape[j];
    p.strides[j] = strides[j];
  }
  if (out.nbytes() > 0 && out.data != data.data) {
    KILN_CUDA_CHECK(
        cudaMemcpyAsync(out.data, data.data, out.nbytes(), cudaMemcpyDeviceToDevice, ctx.stream));
  }
  const int64_t n = updates.numel();
  if (n == 0 || out.numel() == 0) return;
  auto run = [&]<typename T>() {
    dispatch_index_dtype(ctx, indices.dtype, [&]<typename IndexT>() {
      scatter_nd_kernel<T, IndexT><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
          indices.as<const IndexT>(), updates.as<const T>(), out.as<T>(), n, p, reduction);
    });
  };
  if (reduction == Reduction::kNone) {
    dm::dispatch_word(ctx, dtype_size(data.dtype), run);
  } else {
    const std::string what = "reduction '" + reduction_name + "'";
    dispatch_arithmetic(ctx, data.dtype, what.c_str(), run);
  }
  check_launch(ctx);
}

// ScatterND's reductions run as 4- and 8-byte atomics on float32, float64, int32 and int64 data
// (launch_scatter_nd refuses the others); without a reduction every dtype is copied.
std::string refuse_scatter_reduction_dtypes(const format::EngineModel& model,
                                            const format::Layer& layer) {
  const Attribute* reduction = layer.attrs.find("reduction");
  if (reduction == nullptr || reduction->kind != Attribute::Kind::kString || reduction->s == "none")
    return "";
  if (layer.inputs.empty() || layer.inputs[0] < 0 ||
      static_cast<size_t>(layer.inputs[0]) >= model.tensors.size()) {
    return "";  // check_kernel_support reports bad tensor indices
  }
  const DType dtype = model.tensors[static_cast<size_t>(layer.inputs[0])].dtype;
  if (dtype == DType::kFloat32 || dtype == DType::kFloat64 || dtype == DType::kInt32 ||
      dtype == DType::kInt64)
    return "";
  return "its reduction '" + reduction->s + "' on " + std::string(dtype_name(dtype)) +
         " data (the cuda kernel reduces float32, float64, int32 and int64)";
}

}  // namespace

void register_data_movement_kernels(CudaKernelRegistry& registry) {
  registry.add("Transpose", CudaKernel{nullptr, launch_transpose});
  registry.add("Concat", CudaKernel{nullptr, launch_concat});
  registry.add("Split", CudaKernel{nullptr, launch_split});
  registry.add("Slice", CudaKernel{nullptr, launch_slice});
  registry.add("Gather", CudaKernel{nullptr, launch_gather});
  registry.add("GatherElements", CudaKernel{nullptr, launch_gather_elements});
  registry.add("GatherND", CudaKernel{nullptr, launch_gather_nd});
  registry.add("Pad", CudaKernel{nullptr, launch_pad});
  registry.add("Tile", CudaKernel{nullptr, launch_tile});
  registry.add("Expand", CudaKernel{nullptr, launch_expand});
  registry.add("Trilu", CudaKernel{nullptr, launch_trilu});
  registry.add("ScatterND", CudaKernel{nullptr, launch_scatter_nd},
               {.check = refuse_scatter_reduction_dtypes});
}

}  // namespace kiln::cuda
