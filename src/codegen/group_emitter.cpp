#include "codegen/group_emitter.hpp"

// GCC 12 reports false -Wrestrict overlaps inside std::string's operator+ (GCC bug 105329), which
// this file, writing source text, uses throughout.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>

#include "base/error.hpp"
#include "codegen/scalar_math_source.hpp"
#include "ops/group_kernel_abi.hpp"

namespace kiln::codegen {
namespace {

// Helpers every generated module starts with: storage conversions of 16-bit floats (PTX cvt,
// round to nearest even) and raw vector loads/stores of up to 16 bytes.
constexpr const char* kPrelude = R"(typedef unsigned short kiln_u16;
typedef unsigned char kiln_u8;
struct __align__(16) kiln_b16 { unsigned int x, y, z, w; };
struct __align__(8) kiln_b8 { unsigned int x, y; };
__device__ __forceinline__ float kiln_from_f16(kiln_u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ kiln_u16 kiln_to_f16(float f) { kiln_u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ float kiln_from_bf16(kiln_u16 h) { return __uint_as_float(((unsigned int)h) << 16); }
__device__ __forceinline__ kiln_u16 kiln_to_bf16(float f) { kiln_u16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
template <int kBytes> struct kiln_raw;
template <> struct kiln_raw<16> { typedef kiln_b16 type; };
template <> struct kiln_raw<8> { typedef kiln_b8 type; };
template <> struct kiln_raw<4> { typedef unsigned int type; };
template <> struct kiln_raw<2> { typedef unsigned short type; };
template <> struct kiln_raw<1> { typedef unsigned char type; };
template <typename T, int N> struct kiln_vec { T v[N]; };
template <typename T, int N> __device__ __forceinline__ kiln_vec<T, N> kiln_load(const T* p) {
  typedef typename kiln_raw<sizeof(T) * N>::type R;
  union { R r; kiln_vec<T, N> v; } u;
  u.r = *reinterpret_cast<const R*>(p);
  return u.v;
}
template <typename T, int N> __device__ __forceinline__ void kiln_store(T* p, const kiln_vec<T, N>& v) {
  typedef typename kiln_raw<sizeof(T) * N>::type R;
  union { R r; kiln_vec<T, N> v; } u;
  u.v = v;
  *reinterpret_cast<R*>(p) = u.r;
}
__device__ __forceinline__ float kiln_combine_max(float a, float b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
__device__ __forceinline__ float kiln_combine_min(float a, float b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }
)";

const char* storage_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float";
    case DType::kFloat16:
    case DType::kBFloat16:
      return "kiln_u16";
    case DType::kBool:
      return "kiln_u8";
    default:
      fail(ErrorCode::kInternal, "generated kernels do not store ", dtype_name(dtype));
  }
}

size_t storage_size(DType dtype) { return dtype == DType::kFloat32 ? 4 : dtype == DType::kBool ? 1 : 2; }

// The computed value (float or bool) of a stored element `raw`.
std::string from_storage(DType dtype, const std::string& raw) {
  switch (dtype) {
    case DType::kFloat16:
      return "kiln_from_f16(" + raw + ")";
    case DType::kBFloat16:
      return "kiln_from_bf16(" + raw + ")";
    case DType::kBool:
      return "(" + raw + " != 0)";
    default:
      return raw;
  }
}

// The stored element of computed `value`; `is_bool` says what the value is.
std::string to_storage(DType dtype, bool is_bool, const std::string& value) {
  const std::string as_float = is_bool ? "(" + value + " ? 1.0f : 0.0f)" : value;
  switch (dtype) {
    case DType::kFloat16:
      return "kiln_to_f16(" + as_float + ")";
    case DType::kBFloat16:
      return "kiln_to_bf16(" + as_float + ")";
    case DType::kBool:
      return is_bool ? "(kiln_u8)(" + value + " ? 1 : 0)" : "(kiln_u8)(" + value + " != 0.0f ? 1 : 0)";
    default:
      return as_float;
  }
}

// A float literal that means exactly `value` (hex float; inf and NaN by their bits).
std::string float_literal(double value) {
  const float f = static_cast<float>(value);
  if (std::isnan(f)) return "__int_as_float(0x7fc00000)";
  if (std::isinf(f)) return f > 0 ? "__int_as_float(0x7f800000)" : "__int_as_float(0xff800000)";
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%af", static_cast<double>(f));
  return buffer;
}

// A run of adjacent space dims that every loaded tensor either spans fully or broadcasts along.
struct Segment {
  int64_t extent = 1;      // static product, or kDynamicDim when a symbol is in it
  std::string expr;        // the extent as a C expression
  int region = 0;          // 0 outer (or everything, pointwise), 1 reduced, 2 inner
  std::vector<bool> full;  // per layer input
  size_t last_dim = 0;     // the innermost space dim in it
};

struct Variant {
  int block = 256;
  int threads_per_row = 32;  // row schedule
  int rows_per_block = 1;    // row schedule
  int tx = 32;               // column schedule: threads along the columns
  int ty = 8;                // column schedule: threads along the reduced axes
  int unroll = 1;            // pointwise: vectors per thread and grid step, a block apart
  bool split = false;        // column schedule: the reduced rows are split across blocks
};

class Emitter {
 public:
  explicit Emitter(const GroupPlan& plan) : plan_(plan) {
    inputs_ = plan.inputs.size();
    build_segments();
    choose_vector_width();
  }

  GroupKernelSource emit() {
    GroupKernelSource result;
    result.vector_width = vector_;
    std::ostringstream source;
    source << "// kiln generated kernel: " << describe_plan() << "\n";
    if (uses_half_precision_math(plan_)) {
      result.nvrtc_options = {"--prec-div=false"};
      source << "// compiled with --prec-div=false: every float tensor here is 16-bit\n";
    }
    source << ops::kGroupKernelArgsSource << kPrelude << scalar_math_source() << "\n";
    const bool dynamic = !plan_.symbols.empty();
    int64_t space_numel = 1;
    for (int64_t d : plan_.space) space_numel = d == kDynamicDim ? -1 : (space_numel < 0 ? -1 : space_numel * d);
    const bool needs64 = space_numel < 0 || space_numel >= (int64_t{1} << 31) - 4096;
    std::vector<bool> widths = {false};
    if (needs64) widths = dynamic ? std::vector<bool>{false, true} : std::vector<bool>{true};
    for (const Variant& variant : variants()) {
      for (bool index64 : widths) {
        KernelEntry entry;
        entry.block = variant.block;
        entry.index64 = index64;
        entry.name = entry_name(variant, index64);
        entry.per_block = per_block(variant);
        if (variant.split) entry.split_partials = static_cast<int64_t>(split_slots()) * variant.tx;
        source << emit_entry(entry.name, variant, index64);
        result.entries.push_back(entry);
      }
    }
    result.source = source.str();
    unit(result);
    return result;
  }

 private:
  // ---- structure ------------------------------------------------------------------------------

  int region_of(size_t d) const {
    if (plan_.schedule == Schedule::kPointwise) return 0;
    if (d < plan_.reduce_begin) return 0;
    return d < plan_.reduce_end ? 1 : 2;
  }

  std::string dim_expr(size_t d) const {
    if (plan_.space[d] != kDynamicDim) return std::to_string(plan_.space[d]);
    return "s" + std::to_string(plan_.space_symbols[d]);
  }

  // Element strides along the space's dims of the permuted tensors (folded Transposes): layer
  // inputs first, then outputs; empty for tensors laid out as their shape says.
  const std::vector<int64_t>& permuted_strides(size_t t) const {
    return t < inputs_ ? plan_.input_strides[t] : plan_.output_strides[t - inputs_];
  }

  bool input_full_at(size_t k, size_t d) const {
    if (!plan_.input_strides[k].empty()) return plan_.input_strides[k][d] != 0;
    const Shape& shape = plan_.inputs[k].shape;
    const size_t offset = plan_.space.size() - shape.size();
    return d >= offset && shape[d - offset] != 1;
  }

  void build_segments() {
    const size_t rank = plan_.space.size();
    for (size_t d = 0; d < rank; ++d) {
      if (plan_.space[d] == 1) continue;
      std::vector<bool> full(inputs_);
      for (size_t k = 0; k < inputs_; ++k) full[k] = input_full_at(k, d);
      const int region = region_of(d);
      // Permuted tensors merge two dims only where they are contiguous in that tensor too.
      bool contiguous = true;
      if (!segments_.empty()) {
        for (size_t t = 0; t < inputs_ + plan_.outputs.size(); ++t) {
          const std::vector<int64_t>& strides = permuted_strides(t);
          if (!strides.empty()) contiguous &= strides[segments_.back().last_dim] == strides[d] * plan_.space[d];
        }
      }
      if (!segments_.empty() && contiguous && segments_.back().region == region && segments_.back().full == full) {
        Segment& s = segments_.back();
        s.extent = s.extent == kDynamicDim || plan_.space[d] == kDynamicDim ? kDynamicDim : s.extent * plan_.space[d];
        s.expr += "*" + dim_expr(d);
        s.last_dim = d;
        continue;
      }
      segments_.push_back(Segment{plan_.space[d], dim_expr(d), region, std::move(full), d});
    }
    // Regions without a segment still need an (empty) extent of 1.
  }

  std::vector<size_t> region_segments(int region) const {
    std::vector<size_t> out;
    for (size_t i = 0; i < segments_.size(); ++i)
      if (segments_[i].region == region) out.push_back(i);
    return out;
  }

  // The product of the extents of `segments` as a C expression ("1" when empty).
  std::string product(const std::vector<size_t>& segments) const {
    std::string expr;
    for (size_t s : segments) expr += (expr.empty() ? "" : "*") + std::string("(I)(") + segments_[s].expr + ")";
    return expr.empty() ? "(I)1" : expr;
  }

  bool loaded(size_t k) const {
    for (const PlanNode& node : plan_.nodes)
      if (node.kind == NodeKind::kLoad && node.tensor == static_cast<int>(k)) return true;
    return false;
  }

  // The segment vectors run along: the innermost of the region threads walk elements in.
  std::optional<size_t> vector_segment() const {
    if (plan_.schedule == Schedule::kColumn || segments_.empty()) return std::nullopt;
    const int region = plan_.schedule == Schedule::kPointwise ? 0 : 1;
    const std::vector<size_t> segs = region_segments(region);
    if (segs.empty() || segs.back() != segments_.size() - 1) return std::nullopt;
    return segs.back();
  }

  void choose_vector_width() {
    vector_ = 1;
    const std::optional<size_t> seg = vector_segment();
    if (!seg || segments_[*seg].extent == kDynamicDim) return;
    size_t widest = 1;
    for (size_t k = 0; k < inputs_; ++k) {
      if (loaded(k) && segments_[*seg].full[k]) widest = std::max(widest, storage_size(plan_.inputs[k].dtype));
    }
    for (size_t o = 0; o < plan_.outputs.size(); ++o) {
      if (plan_.output_domains[o] == Domain::kSpace) widest = std::max(widest, storage_size(plan_.outputs[o].dtype));
    }
    // A permuted tensor spanning the vector segment must have stride 1 there to be accessed a
    // vector at a time (the planner keeps innermost dims in place; an extent-1 innermost dim can
    // still leave another dim last).
    for (size_t t = 0; t < inputs_ + plan_.outputs.size(); ++t) {
      const std::vector<int64_t>& strides = permuted_strides(t);
      if (!strides.empty() && strides[segments_[*seg].last_dim] > 1) return;
    }
    int width = static_cast<int>(16 / widest);
    while (width > 1 && segments_[*seg].extent % width != 0) width /= 2;
    vector_ = width;
  }

  std::vector<Variant> variants() const {
    std::vector<Variant> out;
    if (plan_.schedule == Schedule::kPointwise) {
      for (int block : {128, 256, 512}) out.push_back(Variant{block});
      // Two vectors per thread and grid step: twice the bytes in flight per thread.
      Variant wide{256};
      wide.unroll = 2;
      out.push_back(wide);
    } else if (plan_.schedule == Schedule::kRow) {
      const int64_t reduced = reduced_static();
      const int64_t vectors = reduced > 0 ? reduced / vector_ : -1;
      if (reduced > 0 && vectors <= 256) {
        // Short rows: a warp or a part of one per row, sized so few lanes idle (each thread then
        // holds 1 to 8 vectors), several rows per block.
        int fit = 4;
        while (fit < 32 && fit < vectors) fit *= 2;
        for (int tpr : {fit, fit / 2}) {
          if (tpr < 4 || (tpr == fit / 2 && (vectors + tpr - 1) / tpr > 8)) continue;
          out.push_back(Variant{256, tpr, 256 / tpr});
        }
        if (fit == 32) out.push_back(Variant{128, 32, 4});
      }
      if (reduced < 0 || vectors > 32) {
        out.push_back(Variant{128, 128, 1});
        out.push_back(Variant{256, 256, 1});
      }
      if (reduced < 0 || vectors > 1024) out.push_back(Variant{512, 512, 1});
    } else {
      const int64_t inner = inner_static();
      const int tx = inner >= 64 ? 64 : inner >= 32 ? 32 : inner >= 16 ? 16 : 8;
      for (int ty : {4, 8, 16}) out.push_back(Variant{tx * ty, 32, 1, tx, ty});
      if (splits_rows()) {
        for (int ty : {8, 16}) {
          Variant split{tx * ty, 32, 1, tx, ty};
          split.split = true;
          out.push_back(split);
        }
      }
    }
    return out;
  }

  // Whether the column schedule also gets entries that split the reduced rows across blocks (the
  // launcher picks the number of splits; the last block of a column tile to finish combines the
  // partial results and runs the epilogue). Only for one reduction pass whose outputs are all row
  // values, over rows long enough to share.
  bool splits_rows() const {
    if (plan_.schedule != Schedule::kColumn || plan_.passes != 1) return false;
    if (!space_outputs().empty() && !space_outputs_precede_reductions()) return false;
    const int64_t rows = reduced_static();
    return rows < 0 || rows >= kMinSplitRows;
  }
  static constexpr int64_t kMinSplitRows = 256;

  // Whether every space output is computed before any reduction (SiLU's output beside its mean, as
  // in squeeze-excitation): the first pass's sweep then stores them as it goes, instead of a second
  // sweep that reads the inputs again, and split entries may store their slice of them.
  bool space_outputs_precede_reductions() const {
    const std::vector<int> outs = space_outputs();
    if (outs.empty()) return false;
    for (int i : space_closure(outs))
      if (node(i).level != 0) return false;
    return true;
  }



  // The reduced elements per row when static, else -1.
  int64_t reduced_static() const {
    int64_t r = 1;
    for (size_t d = plan_.reduce_begin; d < plan_.reduce_end; ++d) {
      if (plan_.space[d] == kDynamicDim) return -1;
      r *= plan_.space[d];
    }
    return r;
  }
  int64_t inner_static() const {
    int64_t r = 1;
    for (size_t d = plan_.reduce_end; d < plan_.space.size(); ++d) r *= plan_.space[d];
    return r;
  }

  std::string entry_name(const Variant& v, bool index64) const {
    std::string name = "kiln_b" + std::to_string(v.block);
    if (v.unroll > 1) name += "_u" + std::to_string(v.unroll);
    if (plan_.schedule == Schedule::kRow) name += "_r" + std::to_string(v.threads_per_row);
    if (plan_.schedule == Schedule::kColumn) name += "_y" + std::to_string(v.ty) + (v.split ? "_split" : "");
    return name + (index64 ? "_i64" : "_i32");
  }

  int64_t per_block(const Variant& v) const {
    if (plan_.schedule == Schedule::kPointwise) return int64_t{v.block} * v.unroll;
    if (plan_.schedule == Schedule::kRow) return v.rows_per_block;
    return 1;
  }

  // kiln_kernel_unit: pointwise units are vectors; row units are rows; column units are
  // (outer row, column tile) pairs.
  void unit(GroupKernelSource& result) const {
    auto encode = [&](size_t d) {
      return plan_.space[d] == kDynamicDim ? int64_t{-1} - plan_.space_symbols[d] : plan_.space[d];
    };
    if (plan_.schedule == Schedule::kPointwise) {
      result.unit = {vector_};
    } else if (plan_.schedule == Schedule::kRow) {
      for (size_t d = plan_.reduce_begin; d < plan_.reduce_end; ++d) result.unit.push_back(encode(d));
    } else {
      for (size_t d = plan_.reduce_begin; d < plan_.space.size(); ++d) result.unit.push_back(encode(d));
      const int tx = variants().front().tx;
      result.multiplier = (inner_static() + tx - 1) / tx;
      if (splits_rows()) {
        for (size_t d = plan_.reduce_begin; d < plan_.reduce_end; ++d) result.split_rows.push_back(encode(d));
      }
    }
  }

  std::string describe_plan() const {
    std::string s = plan_.schedule == Schedule::kPointwise ? "pointwise" : plan_.schedule == Schedule::kRow ? "row" : "column";
    s += " over " + shape_to_string(plan_.space);
    if (plan_.schedule != Schedule::kPointwise) {
      s += ", reducing axes " + std::to_string(plan_.reduce_begin) + ".." + std::to_string(plan_.reduce_end - 1) +
           " in " + std::to_string(plan_.passes) + " pass(es)";
    }
    return s + ", " + std::to_string(vector_) + " element(s) per access";
  }

  // ---- code -----------------------------------------------------------------------------------

  static std::string name(int node) { return "n" + std::to_string(node); }

  const PlanNode& node(int i) const { return plan_.nodes[static_cast<size_t>(i)]; }

  std::string value_type(const PlanNode& n) const { return n.is_bool ? "bool" : "float"; }

  std::string scalar_call(const PlanNode& n) const {
    std::string call = std::string(n.scalar->function) + "<float>(";
    for (size_t a = 0; a < n.args.size(); ++a) call += (a ? ", " : "") + name(n.args[a]);
    for (float p : n.params) call += ", " + float_literal(p);
    return call + ")";
  }

  std::string cast_expr(const PlanNode& n) const {
    const PlanNode& arg = node(n.args[0]);
    const std::string a = name(n.args[0]);
    switch (n.cast_to) {
      case DType::kBool:
        return arg.is_bool ? a : "(" + a + " != 0.0f)";
      case DType::kFloat16:
        return "kiln_from_f16(kiln_to_f16(" + (arg.is_bool ? "(" + a + " ? 1.0f : 0.0f)" : a) + "))";
      case DType::kBFloat16:
        return "kiln_from_bf16(kiln_to_bf16(" + (arg.is_bool ? "(" + a + " ? 1.0f : 0.0f)" : a) + "))";
      default:
        return arg.is_bool ? "(" + a + " ? 1.0f : 0.0f)" : a;
    }
  }

  // The definition of computed node `i` (scalar, cast or constant).
  std::string define(int i) const {
    const PlanNode& n = node(i);
    std::string expr;
    switch (n.kind) {
      case NodeKind::kConstant:
        expr = n.is_bool ? (n.constant != 0.0 ? "true" : "false") : float_literal(n.constant);
        break;
      case NodeKind::kScalar:
        expr = scalar_call(n);
        break;
      case NodeKind::kCast:
        expr = cast_expr(n);
        break;
      default:
        fail(ErrorCode::kInternal, "node ", i, " is not computed inline");
    }
    return "const " + value_type(n) + " " + name(i) + " = " + expr + ";";
  }

  // Space nodes needed (transitively, stopping at row nodes) by `roots`, in node order.
  std::vector<int> space_closure(const std::vector<int>& roots) const {
    std::set<int> seen;
    std::function<void(int)> visit = [&](int i) {
      if (seen.count(i)) return;
      const PlanNode& n = node(i);
      if (n.domain != Domain::kSpace || n.kind == NodeKind::kConstant) return;
      seen.insert(i);
      for (int a : n.args) visit(a);
    };
    for (int r : roots) visit(r);
    return std::vector<int>(seen.begin(), seen.end());
  }

  // Offset expression of input `k` for element coordinates held in variables c<segment>; `flat`
  // is the element's flat index in the space (used when `k` spans every segment).
  std::string offset(size_t k, const std::string& flat, bool row_only) const {
    if (!permuted_strides(k).empty()) return strided_offset(permuted_strides(k), row_only);
    bool all_full = true;
    for (const Segment& s : segments_) all_full &= s.full[k];
    if (all_full && !row_only) return flat;
    std::string expr;
    for (size_t s = 0; s < segments_.size(); ++s) {
      if (!segments_[s].full[k]) continue;
      if (row_only && segments_[s].region == 1) continue;
      std::vector<size_t> later;
      for (size_t l = s + 1; l < segments_.size(); ++l)
        if (segments_[l].full[k]) later.push_back(l);
      expr += (expr.empty() ? "" : " + ") + std::string("c") + std::to_string(s) +
              (later.empty() ? "" : " * (" + product(later) + ")");
    }
    return expr.empty() ? "(I)0" : expr;
  }

  // Σ c<s> * stride over the segments (static strides of a permuted tensor).
  std::string strided_offset(const std::vector<int64_t>& strides, bool row_only) const {
    std::string expr;
    for (size_t s = 0; s < segments_.size(); ++s) {
      const int64_t stride = strides[segments_[s].last_dim];
      if (stride == 0 || (row_only && segments_[s].region == 1)) continue;
      expr += (expr.empty() ? "" : " + ") + std::string("c") + std::to_string(s) +
              (stride == 1 ? "" : " * (I)" + std::to_string(stride));
    }
    return expr.empty() ? "(I)0" : expr;
  }

  // Declares c<s> for the segments of `region` from the region's index variable `index`.
  std::string coordinates(int region, const std::string& index) const {
    const std::vector<size_t> segs = region_segments(region);
    std::string code;
    for (size_t i = 0; i < segs.size(); ++i) {
      const std::vector<size_t> later(segs.begin() + static_cast<long>(i) + 1, segs.end());
      std::string c = later.empty() ? index : "(" + index + " / (" + product(later) + "))";
      if (i > 0) c = "(" + c + " % (I)(" + segments_[segs[i]].expr + "))";
      code += "      const I c" + std::to_string(segs[i]) + " = " + c + ";\n";
    }
    return code;
  }

  // Whether space load `i` is read a vector at a time (it spans the vector segment), else one
  // element per vector (broadcast along it).
  bool vector_load(int i, int width) const {
    const std::optional<size_t> seg = vector_segment();
    return width > 1 && seg && segments_[*seg].full[static_cast<size_t>(node(i).tensor)];
  }

  std::string load_type(int i, int width) const {
    const char* type = storage_type(plan_.inputs[static_cast<size_t>(node(i).tensor)].dtype);
    return vector_load(i, width) ? "kiln_vec<" + std::string(type) + ", " + std::to_string(width) + ">"
                                 : std::string(type);
  }

  // `prefix<i><suffix> = ` the load of space load node i for the vector starting at `flat`.
  std::string load_statements(const std::vector<int>& loads, const std::string& flat, int width,
                              const std::string& prefix, const std::string& suffix) const {
    std::string code;
    for (int i : loads) {
      const size_t k = static_cast<size_t>(node(i).tensor);
      const char* type = storage_type(plan_.inputs[k].dtype);
      const std::string target = prefix + std::to_string(i) + suffix;
      const std::string declare = suffix.empty() ? "const " + load_type(i, width) + " " : "";
      if (vector_load(i, width)) {
        code += "      " + declare + target + " = kiln_load<" + type + ", " + std::to_string(width) + ">(t" +
                std::to_string(k) + " + (" + offset(k, flat, false) + "));\n";
      } else {
        code += "      " + declare + target + " = t" + std::to_string(k) + "[" + offset(k, flat, false) + "];\n";
      }
    }
    return code;
  }

  // Every space value some pass or store needs.
  std::vector<int> all_space_roots() const {
    std::vector<int> roots = space_outputs();
    for (const PlanNode& n : plan_.nodes) {
      if (n.kind == NodeKind::kReduce) roots.push_back(n.args[0]);
    }
    return roots;
  }

  // The loads among `nodes` for a vector starting at flat index `flat` (or, `cached`, the row's
  // registers row<i>[it]), then the per-lane definitions of `nodes` inside `for (v ...)`, then
  // `lane_body` per lane and `after` once.
  std::string vector_block(const std::vector<int>& nodes, const std::string& flat, int width,
                           const std::string& lane_body, const std::string& after, bool cached = false) const {
    std::ostringstream out;
    std::vector<int> loads;
    for (int i : nodes)
      if (node(i).kind == NodeKind::kLoad) loads.push_back(i);
    if (!cached) {
      out << load_statements(loads, flat, width, "l", "");
    } else {
      for (int i : loads) out << "      const " << load_type(i, width) << "& l" << i << " = row" << i << "[it];\n";
    }
    out << "      #pragma unroll\n      for (int v = 0; v < " << width << "; ++v) {\n";
    for (int i : nodes) {
      const PlanNode& n = node(i);
      if (n.kind == NodeKind::kLoad) {
        const size_t k = static_cast<size_t>(n.tensor);
        out << "        const " << value_type(n) << " " << name(i) << " = "
            << from_storage(plan_.inputs[k].dtype, "l" + std::to_string(i) + (vector_load(i, width) ? ".v[v]" : ""))
            << ";\n";
      } else if (n.kind != NodeKind::kReduce) {
        out << "        " << define(i) << "\n";
      }
    }
    out << lane_body << "      }\n" << after;
    return out.str();
  }

  std::string header(const std::string& entry, int block, bool index64) const {
    std::ostringstream out;
    out << "extern \"C\" __global__ void __launch_bounds__(" << block << ") " << entry << "(const KilnArgs a) {\n";
    out << "  typedef " << (index64 ? "long long" : "int") << " I;\n";
    for (size_t s = 0; s < plan_.symbols.size(); ++s) out << "  const I s" << s << " = (I)a.s[" << s << "];\n";
    for (size_t k = 0; k < inputs_; ++k) {
      if (!loaded(k)) continue;
      const char* type = storage_type(plan_.inputs[k].dtype);
      out << "  const " << type << "* __restrict__ t" << k << " = (const " << type << "*)a.t[" << k << "];\n";
    }
    for (size_t o = 0; o < plan_.outputs.size(); ++o) {
      const char* type = storage_type(plan_.outputs[o].dtype);
      out << "  " << type << "* __restrict__ t" << inputs_ + o << " = (" << type << "*)a.t[" << inputs_ + o << "];\n";
    }
    out << "  const I units = (I)a.units;\n";
    for (size_t i = 0; i < plan_.nodes.size(); ++i) {
      if (plan_.nodes[i].kind == NodeKind::kConstant) out << "  " << define(static_cast<int>(i)) << "\n";
    }
    return out.str();
  }

  std::vector<int> space_outputs() const {
    std::vector<int> roots;
    for (size_t o = 0; o < plan_.outputs.size(); ++o)
      if (plan_.output_domains[o] == Domain::kSpace) roots.push_back(plan_.output_nodes[o]);
    return roots;
  }

  // The stores of the space outputs: staging vectors declared before the lane loop, filled per lane,
  // stored (a vector each) after it at `flat`.
  struct SpaceStores {
    std::string declarations, lanes, after;
  };
  SpaceStores space_stores(const std::string& flat, int width) const {
    SpaceStores stores;
    std::string& lanes = stores.lanes;
    std::string& after = stores.after;
    for (size_t o = 0; o < plan_.outputs.size(); ++o) {
      if (plan_.output_domains[o] != Domain::kSpace) continue;
      const DType dtype = plan_.outputs[o].dtype;
      const PlanNode& n = node(plan_.output_nodes[o]);
      const std::string staged = "y" + std::to_string(o);
      const std::string t = "t" + std::to_string(inputs_ + o);
      lanes += "        " + staged + ".v[v] = " + to_storage(dtype, n.is_bool, name(plan_.output_nodes[o])) + ";\n";
      const std::vector<int64_t>& strides = plan_.output_strides[o];
      after += "      kiln_store<" + std::string(storage_type(dtype)) + ", " + std::to_string(width) + ">(" + t + " + (" +
               (strides.empty() ? flat : strided_offset(strides, false)) + "), " + staged + ");\n";
      stores.declarations += "      kiln_vec<" + std::string(storage_type(dtype)) + ", " + std::to_string(width) + "> " +
                             staged + ";\n";
    }
    return stores;
  }

  std::string emit_pointwise(const std::string& entry, const Variant& variant, bool index64) const {
    std::ostringstream out;
    out << header(entry, variant.block, index64);
    const int unroll = variant.unroll;
    const std::string step = std::to_string(int64_t{variant.block} * unroll);
    // A thread's vectors lie a block apart, so each load instruction of a warp reads one
    // contiguous span.
    out << "  for (I u0 = (I)blockIdx.x * " << step << " + (I)threadIdx.x; u0 < units; u0 += (I)gridDim.x * " << step
        << ") {\n";
    out << "    #pragma unroll\n    for (int q = 0; q < " << unroll << "; ++q) {\n";
    out << "      const I u = u0 + q * " << variant.block << ";\n      if (u >= units) break;\n";
    out << "      const I e = u * " << vector_ << ";\n";
    out << coordinates(0, "e");
    const std::vector<int> nodes = space_closure(space_outputs());
    const SpaceStores stores = space_stores("e", vector_);
    out << stores.declarations << vector_block(nodes, "e", vector_, stores.lanes, stores.after);
    out << "    }\n  }\n}\n";
    return out.str();
  }

  // Nodes that are row values of level `level` (computed once per row after pass `level`).
  std::vector<int> row_nodes(int level) const {
    std::vector<int> out;
    for (size_t i = 0; i < plan_.nodes.size(); ++i) {
      const PlanNode& n = plan_.nodes[i];
      if (n.domain == Domain::kRow && n.level == level && n.kind != NodeKind::kConstant) out.push_back(static_cast<int>(i));
    }
    return out;
  }

  std::vector<int> reductions(int level) const {
    std::vector<int> out;
    for (size_t i = 0; i < plan_.nodes.size(); ++i)
      if (plan_.nodes[i].kind == NodeKind::kReduce && plan_.nodes[i].level == level) out.push_back(static_cast<int>(i));
    return out;
  }

  static std::string reduce_init(ReduceKind kind) {
    switch (kind) {
      case ReduceKind::kSum:
        return "0.0f";
      case ReduceKind::kProd:
        return "1.0f";
      case ReduceKind::kMax:
        return "__int_as_float(0xff800000)";
      case ReduceKind::kMin:
        return "__int_as_float(0x7f800000)";
    }
    return "0.0f";
  }
  static std::string combine(ReduceKind kind, const std::string& a, const std::string& b) {
    switch (kind) {
      case ReduceKind::kSum:
        return a + " + " + b;
      case ReduceKind::kProd:
        return a + " * " + b;
      case ReduceKind::kMax:
        return "kiln_combine_max(" + a + ", " + b + ")";
      case ReduceKind::kMin:
        return "kiln_combine_min(" + a + ", " + b + ")";
    }
    return a;
  }

  // One reduction pass: the accumulators' declarations, the space nodes its loop evaluates and the
  // per-lane accumulation of each reduction's argument.
  struct PassCode {
    std::string accumulators;
    std::vector<int> space_nodes;
    std::string lanes;
  };
  PassCode pass_code(const std::vector<int>& reductions_of_pass) const {
    PassCode pass;
    std::vector<int> args;
    for (int i : reductions_of_pass) {
      const std::string acc = "acc" + std::to_string(i);
      args.push_back(node(i).args[0]);
      pass.accumulators += "    float " + acc + " = " + reduce_init(node(i).reduce) + ";\n";
      pass.lanes += "        " + acc + " = " + combine(node(i).reduce, acc, name(node(i).args[0])) + ";\n";
    }
    pass.space_nodes = space_closure(args);
    return pass;
  }

  // Row-value definitions for `level`: reductions read their accumulators, loads read the row.
  std::string row_definitions(int level, const std::string& row_flat) const {
    std::ostringstream out;
    for (int i : row_nodes(level)) {
      const PlanNode& n = node(i);
      if (n.kind == NodeKind::kReduce) {
        out << "    const float " << name(i) << " = acc" << i << ";\n";
      } else if (n.kind == NodeKind::kLoad) {
        const size_t k = static_cast<size_t>(n.tensor);
        out << "    const " << value_type(n) << " " << name(i) << " = "
            << from_storage(plan_.inputs[k].dtype, "t" + std::to_string(k) + "[" + offset(k, row_flat, true) + "]")
            << ";\n";
      } else {
        out << "    " << define(i) << "\n";
      }
    }
    return out.str();
  }

  // Row outputs, stored once per row at `row_index` by the thread where `leader` holds.
  std::string row_stores(const std::string& row_index, const std::string& leader) const {
    std::string code;
    for (size_t o = 0; o < plan_.outputs.size(); ++o) {
      if (plan_.output_domains[o] != Domain::kRow) continue;
      const PlanNode& n = node(plan_.output_nodes[o]);
      code += "    if (" + leader + ") t" + std::to_string(inputs_ + o) + "[" + row_index + "] = " +
              to_storage(plan_.outputs[o].dtype, n.is_bool, name(plan_.output_nodes[o])) + ";\n";
    }
    return code;
  }

  std::string emit_row(const std::string& entry, const Variant& variant, bool index64) const {
    const int tpr = variant.threads_per_row;
    const int rpb = variant.rows_per_block;
    const int width = vector_;
    const int64_t reduced = reduced_static();
    const std::string R = product(region_segments(1));
    std::ostringstream out;
    out << header(entry, variant.block, index64);
    size_t slots = 1;
    for (int level = 1; level <= plan_.passes; ++level) slots = std::max(slots, reductions(level).size());
    if (tpr > 32) out << "  __shared__ float red[" << slots << "][" << tpr / 32 << "];\n";
    out << "  const int lane = threadIdx.x % " << tpr << ";\n";
    out << "  const I R = " << R << ";\n";
    // Every thread of a block runs the same iterations (block reductions synchronise, and the
    // shuffles of rows narrower than a warp need the whole warp): rows past the end only idle.
    out << "  for (I base = (I)blockIdx.x * " << rpb << "; base < units; base += (I)gridDim.x * " << rpb << ") {\n";
    out << "    const I r = base + (I)(threadIdx.x / " << tpr << ");\n";
    out << "    const bool row_ok = r < units;\n";
    out << "    const I o = row_ok ? r : (I)0;\n" << coordinates(0, "o");
    out << row_definitions(0, "o * R");
    // Static trip counts unroll; a row of at most kCachedTrips vectors per thread stays in
    // registers, loaded once for every pass, else each pass re-reads it (L1/L2 hits).
    constexpr int64_t kCachedTrips = 4;
    const int64_t trips_static = reduced > 0 ? (reduced / width + tpr - 1) / tpr : -1;
    const bool cached = trips_static > 0 && trips_static <= kCachedTrips;
    const std::string trips = reduced > 0 ? std::to_string(trips_static)
                                          : "((R / " + std::to_string(width) + " + " + std::to_string(tpr - 1) +
                                                ") / " + std::to_string(tpr) + ")";
    const bool exact = reduced > 0 && (reduced / width) % tpr == 0;
    auto loop_open = [&]() {
      std::string s = "    " + std::string(reduced > 0 ? "#pragma unroll\n    " : "") + "for (int it = 0; it < " + trips +
                      "; ++it) {\n      const I j = ((I)lane + (I)it * " + std::to_string(tpr) + ") * " +
                      std::to_string(width) + ";\n";
      s += exact ? "      if (row_ok) {\n" : "      if (row_ok && j < R) {\n";
      s += coordinates(1, "j");
      return s;
    };
    const std::string loop_close = "      }\n    }\n";
    std::vector<int> space_loads;
    if (cached) {
      for (int i : space_closure(all_space_roots())) {
        if (node(i).kind == NodeKind::kLoad) space_loads.push_back(i);
      }
      for (int i : space_loads) out << "    " << load_type(i, width) << " row" << i << "[" << trips_static << "];\n";
      out << loop_open() << load_statements(space_loads, "o * R + j", width, "row", "[it]") << loop_close;
    }
    for (int level = 1; level <= plan_.passes; ++level) {
      const std::vector<int> reds = reductions(level);
      const PassCode pass = pass_code(reds);
      out << pass.accumulators << loop_open() << vector_block(pass.space_nodes, "o * R + j", width, pass.lanes, "", cached)
          << loop_close;
      // Across the row's threads: shuffles within the row's lanes, then (block-wide rows) shared
      // memory across its warps.
      for (size_t s = 0; s < reds.size(); ++s) {
        const int i = reds[s];
        const std::string acc = "acc" + std::to_string(i);
        const int warp_span = std::min(tpr, 32);
        out << "    #pragma unroll\n    for (int m = " << warp_span / 2 << "; m > 0; m >>= 1) " << acc << " = "
            << combine(node(i).reduce, acc, "__shfl_xor_sync(0xffffffffu, " + acc + ", m)") << ";\n";
        if (tpr > 32) out << "    if (lane % 32 == 0) red[" << s << "][lane / 32] = " << acc << ";\n";
      }
      if (tpr > 32) {
        out << "    __syncthreads();\n";
        for (size_t s = 0; s < reds.size(); ++s) {
          const int i = reds[s];
          const std::string acc = "acc" + std::to_string(i);
          out << "    " << acc << " = red[" << s << "][0];\n";
          out << "    for (int w = 1; w < " << tpr / 32 << "; ++w) " << acc << " = "
              << combine(node(i).reduce, acc, "red[" + std::to_string(s) + "][w]") << ";\n";
        }
        out << "    __syncthreads();\n";
      }
      out << row_definitions(level, "o * R");
    }
    const std::vector<int> outs = space_outputs();
    if (!outs.empty()) {
      const SpaceStores stores = space_stores("o * R + j", width);
      out << loop_open() << stores.declarations
          << vector_block(space_closure(outs), "o * R + j", width, stores.lanes, stores.after, cached) << loop_close;
    }
    out << row_stores("r", "row_ok && lane == 0");
    out << "  }\n}\n";
    return out.str();
  }

  // Column schedules, per work unit u: its outer row o and this thread's column (inactive past the
  // last one), their coordinates, and the row values every pass reads.
  std::string column_unit_prologue(int64_t tiles, int tx, const std::string& row_flat) const {
    std::ostringstream out;
    out << "    const I o = u / " << tiles << ";\n";
    out << "    const I ci = (u % " << tiles << ") * " << tx << " + tx;\n";
    out << "    const bool active = ci < inner;\n";
    out << coordinates(0, "o");
    out << "    const I c_inner = active ? ci : (I)0;\n" << coordinates(2, "c_inner");
    out << row_definitions(0, row_flat);
    return out.str();
  }

  // The first pass's sweep: its space nodes, the accumulation per lane and, where the space outputs
  // precede the reductions, their stores at `flat`.
  std::string first_pass_sweep(const PassCode& pass, const std::string& flat) const {
    if (!space_outputs_precede_reductions()) return vector_block(pass.space_nodes, flat, 1, pass.lanes, "");
    std::vector<int> nodes = pass.space_nodes;
    for (int i : space_closure(space_outputs())) nodes.push_back(i);
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    const SpaceStores stores = space_stores(flat, 1);
    return stores.declarations + vector_block(nodes, flat, 1, pass.lanes + stores.lanes, stores.after);
  }
  std::string emit_column(const std::string& entry, const Variant& variant, bool index64) const {
    const int tx = variant.tx;
    const int ty = variant.ty;
    const std::string R = product(region_segments(1));
    const std::string inner = product(region_segments(2));
    const int64_t tiles = (inner_static() + tx - 1) / tx;
    std::ostringstream out;
    out << header(entry, variant.block, index64);
    size_t slots = 1;
    for (int level = 1; level <= plan_.passes; ++level) slots = std::max(slots, reductions(level).size());
    out << "  __shared__ float red[" << slots << "][" << ty << "][" << tx << "];\n";
    out << "  const int tx = threadIdx.x % " << tx << ", ty = threadIdx.x / " << tx << ";\n";
    out << "  const I R = " << R << ", inner = " << inner << ";\n";
    out << "  for (I u = (I)blockIdx.x; u < units; u += (I)gridDim.x) {\n";
    const std::string flat = "(o * R + j) * inner + c_inner";
    const std::string row_flat = "o * R * inner + c_inner";
    out << column_unit_prologue(tiles, tx, row_flat);
    // Unrolled: each thread moves one element per row, so several rows' loads must be in flight.
    const std::string loop_open = "    #pragma unroll 4\n    for (I j = (I)ty; active && j < R; j += " + std::to_string(ty) +
                                  ") {\n" + coordinates(1, "j");
    for (int level = 1; level <= plan_.passes; ++level) {
      const std::vector<int> reds = reductions(level);
      const PassCode pass = pass_code(reds);
      const std::string sweep =
          level == 1 ? first_pass_sweep(pass, flat) : vector_block(pass.space_nodes, flat, 1, pass.lanes, "");
      out << pass.accumulators << loop_open << sweep << "    }\n";
      for (size_t s = 0; s < reds.size(); ++s) out << "    red[" << s << "][ty][tx] = acc" << reds[s] << ";\n";
      out << "    __syncthreads();\n";
      for (size_t s = 0; s < reds.size(); ++s) {
        const int i = reds[s];
        const std::string acc = "acc" + std::to_string(i);
        out << "    " << acc << " = red[" << s << "][0][tx];\n";
        out << "    for (int y = 1; y < " << ty << "; ++y) " << acc << " = "
            << combine(node(i).reduce, acc, "red[" + std::to_string(s) + "][y][tx]") << ";\n";
      }
      out << "    __syncthreads();\n";
      out << row_definitions(level, row_flat);
    }
    const std::vector<int> outs = space_outputs();
    if (!outs.empty() && !space_outputs_precede_reductions()) {
      const SpaceStores stores = space_stores(flat, 1);
      out << loop_open << stores.declarations
          << vector_block(space_closure(outs), flat, 1, stores.lanes, stores.after) << "    }\n";
    }
    out << row_stores("o * inner + c_inner", "active && ty == 0");
    out << "  }\n}\n";
    return out.str();
  }

  size_t split_slots() const { return reductions(1).size(); }

  // The column schedule with the reduced rows split into a.splits contiguous slices, one block
  // per (unit, slice). Each block writes its tile's partial accumulators to the workspace; the
  // last block of a unit to finish (an atomic count per unit, which it then resets to 0 for the
  // next launch) combines the slices in slice order, so results do not depend on timing, and runs
  // the row epilogue and stores.
  std::string emit_column_split(const std::string& entry, const Variant& variant, bool index64) const {
    const int tx = variant.tx;
    const int ty = variant.ty;
    const std::string R = product(region_segments(1));
    const std::string inner = product(region_segments(2));
    const int64_t tiles = (inner_static() + tx - 1) / tx;
    const std::vector<int> reds = reductions(1);
    const size_t slots = reds.size();
    std::ostringstream out;
    out << header(entry, variant.block, index64);
    out << "  __shared__ float red[" << slots << "][" << ty << "][" << tx << "];\n";
    out << "  __shared__ int last_of_unit;\n";
    out << "  float* __restrict__ partials = (float*)a.workspace;\n";
    out << "  unsigned* __restrict__ arrived = a.counters;\n";
    out << "  const int tx = threadIdx.x % " << tx << ", ty = threadIdx.x / " << tx << ";\n";
    out << "  const I R = " << R << ", inner = " << inner << ";\n";
    out << "  const I S = (I)a.splits, chunk = (R + S - 1) / S;\n";
    out << "  for (I w = (I)blockIdx.x; w < units * S; w += (I)gridDim.x) {\n";
    out << "    const I u = w / S, slice = w % S;\n";
    const std::string flat = "(o * R + j) * inner + c_inner";
    const std::string row_flat = "o * R * inner + c_inner";
    out << column_unit_prologue(tiles, tx, row_flat);
    const PassCode pass = pass_code(reds);
    out << pass.accumulators;
    out << "    const I j_end = (slice + 1) * chunk < R ? (slice + 1) * chunk : R;\n";
    out << "    #pragma unroll 4\n    for (I j = slice * chunk + (I)ty; active && j < j_end; j += " << ty << ") {\n"
        << coordinates(1, "j") << first_pass_sweep(pass, flat) << "    }\n";
    for (size_t k = 0; k < slots; ++k) out << "    red[" << k << "][ty][tx] = acc" << reds[k] << ";\n";
    out << "    __syncthreads();\n";
    out << "    if (ty == 0) {\n";
    for (size_t k = 0; k < slots; ++k) {
      const int i = reds[k];
      const std::string acc = "acc" + std::to_string(i);
      out << "      for (int y = 1; y < " << ty << "; ++y) " << acc << " = "
          << combine(node(i).reduce, acc, "red[" + std::to_string(k) + "][y][tx]") << ";\n";
      out << "      partials[((u * S + slice) * " << slots << " + " << k << ") * " << tx << " + tx] = " << acc << ";\n";
    }
    out << "    }\n";
    out << "    __threadfence();\n    __syncthreads();\n";
    out << "    if (threadIdx.x == 0) last_of_unit = atomicAdd(arrived + u, 1u) == (unsigned)(S - 1);\n";
    out << "    __syncthreads();\n";
    out << "    if (last_of_unit) {\n";
    out << "      __threadfence();\n";
    out << "      if (threadIdx.x == 0) arrived[u] = 0u;\n";
    out << "      const volatile float* seen = partials;\n";
    for (size_t k = 0; k < slots; ++k) {
      const int i = reds[k];
      const std::string acc = "acc" + std::to_string(i);
      const std::string at = "((u * S + p) * " + std::to_string(slots) + " + " + std::to_string(k) + ") * " +
                             std::to_string(tx) + " + tx";
      out << "      " << acc << " = " << reduce_init(node(i).reduce) << ";\n";
      out << "      if (ty == 0) for (I p = 0; p < S; ++p) " << acc << " = "
          << combine(node(i).reduce, acc, "seen[" + at + "]") << ";\n";
    }
    out << row_definitions(1, row_flat);
    out << row_stores("o * inner + c_inner", "active && ty == 0");
    out << "    }\n";
    out << "    __syncthreads();\n";
    out << "  }\n}\n";
    return out.str();
  }

  std::string emit_entry(const std::string& entry, const Variant& variant, bool index64) const {
    switch (plan_.schedule) {
      case Schedule::kPointwise:
        return emit_pointwise(entry, variant, index64);
      case Schedule::kRow:
        return emit_row(entry, variant, index64);
      case Schedule::kColumn:
        return variant.split ? emit_column_split(entry, variant, index64) : emit_column(entry, variant, index64);
    }
    return {};
  }

  const GroupPlan& plan_;
  size_t inputs_ = 0;
  std::vector<Segment> segments_;
  int vector_ = 1;
};

}  // namespace

GroupKernelSource emit_group_kernel(const GroupPlan& plan) { return Emitter(plan).emit(); }

bool uses_half_precision_math(const GroupPlan& plan) {
  bool any_float = false;
  for (const std::vector<PlanTensor>* tensors : {&plan.inputs, &plan.outputs}) {
    for (const PlanTensor& t : *tensors) {
      if (t.dtype == DType::kFloat32 || t.dtype == DType::kFloat64) return false;
      any_float = any_float || t.dtype == DType::kFloat16 || t.dtype == DType::kBFloat16;
    }
  }
  return any_float;
}

}  // namespace kiln::codegen
