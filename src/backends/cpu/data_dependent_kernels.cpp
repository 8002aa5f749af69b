// NonZero, Unique, Compress, NonMaxSuppression on the CPU. Their outputs arrive allocated at the
// upper bounds infer_node_bounds gives; each kernel writes its result row-major from the start of
// the buffer and sets the output view's shape to the shape it wrote (OpDef::data_dependent_shapes).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "base/half.hpp"
#include "ops/data_dependent.hpp"

namespace kiln::cpu {
namespace {

// Shrinks output `o` to `shape`, which must fit the bound the executor allocated.
void set_output_shape(KernelContext& ctx, size_t o, Shape shape) {
  TensorView& out = ctx.outputs[o];
  if (shape.size() != out.shape.size() || shape_numel(shape) > out.numel()) {
    ctx.fail(ErrorCode::kInternal, "output ", o, " would be ", shape_to_string(shape), ", beyond its bound ",
             shape_to_string(out.shape));
  }
  out.shape = std::move(shape);
}

// Element i of `view` as a comparable value: half types widen to float, bool to its byte.
template <typename T>
auto element(const TensorView& view, int64_t i) {
  const T& v = view.as<const T>()[i];
  if constexpr (std::is_same_v<T, Float16Bits>) {
    return half_to_float(v.bits);
  } else if constexpr (std::is_same_v<T, BFloat16Bits>) {
    return bfloat16_to_float(v.bits);
  } else if constexpr (std::is_same_v<T, BoolByte>) {
    return v.value;
  } else {
    return v;
  }
}

// A strict weak order that puts NaN after every number (and NaNs equal to each other), as
// numpy's unique does.
template <typename V>
bool less_nan_last(V a, V b) {
  if constexpr (std::is_floating_point_v<V>) {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
  }
  return a < b;
}

// Calls fn(TypeTag<T>) for every dtype whose elements these kernels compare by value.
template <typename Fn>
bool dispatch_comparable(DType dtype, Fn&& fn) {
  return dispatch_among<KILN_FLOAT_TYPES, KILN_SIGNED_INT_TYPES, KILN_UNSIGNED_INT_TYPES, Float16Bits, BFloat16Bits,
                        BoolByte>(dtype, fn);
}

// Whether byte `b` of an 8-bit-or-narrower float or integer dtype is non-zero.
bool small_element_nonzero(DType dtype, uint8_t b) {
  switch (dtype) {
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E5M2:
      return (b & 0x7f) != 0;  // 0x80 is -0
    case DType::kFloat8E8M0:
      return true;  // 2^(code - 127): never zero
    case DType::kFloat4E2M1:
      return (b & 0x7) != 0;
    case DType::kUInt4:
      return (b & 0xf) != 0;
    case DType::kUInt2:
      return (b & 0x3) != 0;
    default:
      return b != 0;  // FNUZ floats (0x80 is NaN), int4/int2 held as int8 values
  }
}

std::vector<bool> nonzero_mask(const KernelContext& ctx, const TensorView& x) {
  const int64_t n = x.numel();
  std::vector<bool> mask(static_cast<size_t>(n));
  const bool dispatched = dispatch_comparable(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < n; ++i) mask[static_cast<size_t>(i)] = element<T>(x, i) != 0;
  });
  if (!dispatched) {
    if (dtype_size(x.dtype) != 1) ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(x.dtype), " is not supported");
    const auto* bytes = x.as<const uint8_t>();
    for (int64_t i = 0; i < n; ++i) mask[static_cast<size_t>(i)] = small_element_nonzero(x.dtype, bytes[i]);
  }
  return mask;
}

void nonzero_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const std::vector<bool> mask = nonzero_mask(ctx, x);
  const auto count = static_cast<int64_t>(std::count(mask.begin(), mask.end(), true));
  const auto rank = static_cast<int64_t>(x.shape.size());
  set_output_shape(ctx, 0, {rank, count});
  auto* out = ctx.outputs[0].as<int64_t>();
  int64_t column = 0;
  Shape index(x.shape.size(), 0);
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i]) {
      for (int64_t d = 0; d < rank; ++d) out[d * count + column] = index[static_cast<size_t>(d)];
      ++column;
    }
    for (int64_t d = rank - 1; d >= 0; --d) {  // row-major increment
      if (++index[static_cast<size_t>(d)] < x.shape[static_cast<size_t>(d)]) break;
      index[static_cast<size_t>(d)] = 0;
    }
  }
}

void compress_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& condition = ctx.inputs[1];
  const auto* keep = condition.as<const uint8_t>();
  const int64_t length = condition.numel();
  int64_t outer = 1;
  int64_t extent = x.numel();
  int64_t inner = 1;
  int64_t axis = -1;
  if (ctx.attrs.has("axis")) {
    const auto rank = static_cast<int64_t>(x.shape.size());
    axis = ctx.attrs.get_int("axis");
    if (axis < 0) axis += rank;
    extent = x.shape[static_cast<size_t>(axis)];
    for (int64_t d = 0; d < axis; ++d) outer *= x.shape[static_cast<size_t>(d)];
    for (int64_t d = axis + 1; d < rank; ++d) inner *= x.shape[static_cast<size_t>(d)];
  }
  std::vector<int64_t> selected;
  for (int64_t i = 0; i < length; ++i) {
    if (!keep[i]) continue;
    if (i >= extent) {
      ctx.fail(ErrorCode::kInvalidArgument, "condition selects index ", i, ", beyond the ", extent,
               " the input has along the compressed axis");
    }
    selected.push_back(i);
  }
  const auto count = static_cast<int64_t>(selected.size());
  Shape shape{count};
  if (axis >= 0) {
    shape = x.shape;
    shape[static_cast<size_t>(axis)] = count;
  }
  set_output_shape(ctx, 0, shape);
  const size_t slice_bytes = static_cast<size_t>(inner) * dtype_size(x.dtype);
  const auto* in = x.as<const uint8_t>();
  auto* out = ctx.outputs[0].as<uint8_t>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t s = 0; s < count; ++s) {
      std::memcpy(out + static_cast<size_t>(o * count + s) * slice_bytes,
                  in + static_cast<size_t>(o * extent + selected[static_cast<size_t>(s)]) * slice_bytes, slice_bytes);
    }
  }
}

void unique_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const auto rank = static_cast<int64_t>(x.shape.size());
  const std::optional<int64_t> axis = ops::unique_axis(ctx.attrs, rank, ctx.node_name);
  const bool sorted = ctx.attrs.get_int_or("sorted", 1) != 0;
  int64_t outer = 1;
  int64_t extent = x.numel();
  int64_t inner = 1;
  if (axis) {
    extent = x.shape[static_cast<size_t>(*axis)];
    for (int64_t d = 0; d < *axis; ++d) outer *= x.shape[static_cast<size_t>(d)];
    for (int64_t d = *axis + 1; d < rank; ++d) inner *= x.shape[static_cast<size_t>(d)];
  }
  // Slice s (all elements with index s along the axis, in row-major order of the other dims)
  // compared lexicographically: -1, 0 or 1.
  std::vector<int64_t> order(static_cast<size_t>(extent));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::vector<int64_t> group_of(static_cast<size_t>(extent));  // sorted position of each slice's group
  std::vector<int64_t> first;                                   // per group: first slice index
  std::vector<int64_t> counts;
  const bool dispatched = dispatch_comparable(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto compare = [&](int64_t a, int64_t b) {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t k = 0; k < inner; ++k) {
          const auto va = element<T>(x, (o * extent + a) * inner + k);
          const auto vb = element<T>(x, (o * extent + b) * inner + k);
          if (less_nan_last(va, vb)) return -1;
          if (less_nan_last(vb, va)) return 1;
        }
      }
      return 0;
    };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return compare(a, b) < 0; });
    for (size_t i = 0; i < order.size(); ++i) {
      if (i == 0 || compare(order[i - 1], order[i]) != 0) {
        first.push_back(order[i]);  // stable: the smallest index of its group
        counts.push_back(0);
      }
      group_of[static_cast<size_t>(order[i])] = static_cast<int64_t>(first.size()) - 1;
      ++counts.back();
    }
  });
  if (!dispatched) ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(x.dtype), " is not supported");
  const auto unique_count = static_cast<int64_t>(first.size());
  // Output position of each group: sorted order, or order of first occurrence.
  std::vector<int64_t> position(first.size());
  std::iota(position.begin(), position.end(), int64_t{0});
  if (!sorted) {
    std::vector<int64_t> by_first(first.size());
    std::iota(by_first.begin(), by_first.end(), int64_t{0});
    std::sort(by_first.begin(), by_first.end(),
              [&](int64_t a, int64_t b) { return first[static_cast<size_t>(a)] < first[static_cast<size_t>(b)]; });
    for (size_t p = 0; p < by_first.size(); ++p) position[static_cast<size_t>(by_first[p])] = static_cast<int64_t>(p);
  }
  Shape y_shape{unique_count};
  if (axis) {
    y_shape = x.shape;
    y_shape[static_cast<size_t>(*axis)] = unique_count;
  }
  set_output_shape(ctx, 0, y_shape);
  const size_t slice_bytes = static_cast<size_t>(inner) * dtype_size(x.dtype);
  const auto* in = x.as<const uint8_t>();
  auto* y = ctx.outputs[0].as<uint8_t>();
  for (int64_t g = 0; g < unique_count; ++g) {
    const int64_t p = position[static_cast<size_t>(g)];
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(y + static_cast<size_t>(o * unique_count + p) * slice_bytes,
                  in + static_cast<size_t>(o * extent + first[static_cast<size_t>(g)]) * slice_bytes, slice_bytes);
    }
  }
  if (ctx.outputs.size() > 1) {
    set_output_shape(ctx, 1, {unique_count});
    for (int64_t g = 0; g < unique_count; ++g)
      ctx.outputs[1].as<int64_t>()[position[static_cast<size_t>(g)]] = first[static_cast<size_t>(g)];
  }
  if (ctx.outputs.size() > 2) {
    for (int64_t s = 0; s < extent; ++s)
      ctx.outputs[2].as<int64_t>()[s] = position[static_cast<size_t>(group_of[static_cast<size_t>(s)])];
  }
  if (ctx.outputs.size() > 3) {
    set_output_shape(ctx, 3, {unique_count});
    for (int64_t g = 0; g < unique_count; ++g)
      ctx.outputs[3].as<int64_t>()[position[static_cast<size_t>(g)]] = counts[static_cast<size_t>(g)];
  }
}

struct Corners {
  float x_min, y_min, x_max, y_max;
};

Corners corners_of(const float* box, bool center_point_box) {
  if (center_point_box) {
    return {box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, box[1] + box[3] / 2};
  }
  // [y1, x1, y2, x2]: any diagonal pair of corners.
  return {std::min(box[1], box[3]), std::min(box[0], box[2]), std::max(box[1], box[3]), std::max(box[0], box[2])};
}

// Whether `a` overlaps `b` by more than `iou_threshold` (intersection over union).
bool suppresses(const Corners& a, const Corners& b, float iou_threshold) {
  const float x_min = std::max(a.x_min, b.x_min);
  const float x_max = std::min(a.x_max, b.x_max);
  const float y_min = std::max(a.y_min, b.y_min);
  const float y_max = std::min(a.y_max, b.y_max);
  if (x_max <= x_min || y_max <= y_min) return false;
  const float intersection = (x_max - x_min) * (y_max - y_min);
  const float area_a = (a.x_max - a.x_min) * (a.y_max - a.y_min);
  const float area_b = (b.x_max - b.x_min) * (b.y_max - b.y_min);
  const float union_area = area_a + area_b - intersection;
  if (intersection <= 0 || area_a <= 0 || area_b <= 0 || union_area <= 0) return false;
  return intersection / union_area > iou_threshold;
}

void non_max_suppression_kernel(KernelContext& ctx) {
  const TensorView& boxes = ctx.inputs[0];
  const TensorView& scores = ctx.inputs[1];
  const int64_t batches = scores.shape[0];
  const int64_t classes = scores.shape[1];
  const int64_t num_boxes = scores.shape[2];
  if (boxes.shape[0] != batches || boxes.shape[1] != num_boxes || boxes.shape[2] != 4) {
    ctx.fail(ErrorCode::kInvalidArgument, "boxes ", shape_to_string(boxes.shape), " do not match scores ",
             shape_to_string(scores.shape), " (expected [", batches, ", ", num_boxes, ", 4])");
  }
  auto scalar_input = [&](size_t i) -> const TensorView* {
    return ctx.has_input(i) && ctx.inputs[i].numel() > 0 ? &ctx.inputs[i] : nullptr;
  };
  const TensorView* max_input = scalar_input(2);
  const int64_t max_per_class = max_input ? std::max<int64_t>(max_input->as<const int64_t>()[0], 0) : 0;
  const float iou_threshold = scalar_input(3) ? scalar_input(3)->as<const float>()[0] : 0.0f;
  const TensorView* score_threshold = scalar_input(4);
  const bool center_point_box = ctx.attrs.get_int_or("center_point_box", 0) != 0;

  std::vector<int64_t> rows;  // (batch, class, box) triples
  std::vector<int64_t> candidates;
  std::vector<Corners> kept;
  for (int64_t b = 0; b < batches; ++b) {
    const float* batch_boxes = boxes.as<const float>() + b * num_boxes * 4;
    for (int64_t c = 0; c < classes; ++c) {
      const float* class_scores = scores.as<const float>() + (b * classes + c) * num_boxes;
      candidates.clear();
      for (int64_t i = 0; i < num_boxes; ++i) {
        if (!score_threshold || class_scores[i] > score_threshold->as<const float>()[0]) candidates.push_back(i);
      }
      // Highest score first; equal scores by lower box index.
      std::stable_sort(candidates.begin(), candidates.end(),
                       [&](int64_t i, int64_t j) { return class_scores[i] > class_scores[j]; });
      kept.clear();
      for (int64_t i : candidates) {
        if (static_cast<int64_t>(kept.size()) >= max_per_class) break;
        const Corners box = corners_of(batch_boxes + i * 4, center_point_box);
        bool selected = true;
        for (const Corners& k : kept) {
          if (suppresses(box, k, iou_threshold)) {
            selected = false;
            break;
          }
        }
        if (!selected) continue;
        kept.push_back(box);
        rows.insert(rows.end(), {b, c, i});
      }
    }
  }
  set_output_shape(ctx, 0, {static_cast<int64_t>(rows.size() / 3), 3});
  if (!rows.empty()) std::memcpy(ctx.outputs[0].data, rows.data(), rows.size() * sizeof(int64_t));
}

}  // namespace

void register_data_dependent_kernels(CpuKernelRegistry& registry) {
  registry.add("NonZero", CpuKernel{&nn::kernel_with_node_errors<nonzero_kernel>, false});
  registry.add("Unique", CpuKernel{&nn::kernel_with_node_errors<unique_kernel>, false});
  registry.add("Compress", CpuKernel{&nn::kernel_with_node_errors<compress_kernel>, false});
  registry.add("NonMaxSuppression", CpuKernel{&nn::kernel_with_node_errors<non_max_suppression_kernel>, false});
}

}  // namespace kiln::cpu
