// libkiln_cpu_onednn.so: the CPU backend's convolution on oneDNN, in a library of its own so that
// libkiln_runtime.so does not need libdnnl (a deployment without oneDNN still loads the runtime and
// runs the reference convolution). The runtime dlopens it from its own directory at the first
// convolution (onednn_conv.cpp) and reaches it only through kiln_cpu_onednn_entry.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <string_view>
#include <unordered_map>

#include "backends/cpu/conv_geometry.hpp"
#include "backends/cpu/fused_activation.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/simd_math.hpp"
#include "backends/cpu/onednn/onednn_library.hpp"
#include "ops/nn_layout.hpp"

namespace kiln::cpu::onednn {

namespace {

// OpenMP's thread count is per calling thread: this call's primitive runs on as many threads as
// the context's intra-op pool has (intra_op_threads.hpp), and the caller's own setting comes back
// after it. Looked up, not linked: the OpenMP runtime is the one libdnnl needs (this library's
// own dependency, which dlsym from here finds even when the runtime loaded us RTLD_LOCAL).
class OpenMpThreadsScope {
 public:
  explicit OpenMpThreadsScope(int threads) {
    static const auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    static const auto set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    if (get == nullptr || set == nullptr) return;
    set_ = set;
    previous_ = get();
    set(threads);
  }
  ~OpenMpThreadsScope() {
    if (set_) set_(previous_);
  }
  OpenMpThreadsScope(const OpenMpThreadsScope&) = delete;
  OpenMpThreadsScope& operator=(const OpenMpThreadsScope&) = delete;

 private:
  void (*set_)(int) = nullptr;
  int previous_ = 1;
};

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "no JIT ISA (reference code)";
  }
}

// What a prepared layer depends on besides its attributes (fixed per layer): rebuilt on change.
struct ConvKey {
  Shape x, w, y;
  bool has_bias = false;
  bool has_residual = false;
};

ConvKey key_of(const KernelContext& ctx) {
  return ConvKey{ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.outputs[0].shape, ctx.has_input(2),
                 ctx.has_input(3)};
}

// key == key_of(ctx), without building (allocating) a key on every call.
bool same_key(const ConvKey& key, const KernelContext& ctx) {
  return key.x == ctx.inputs[0].shape && key.w == ctx.inputs[1].shape && key.y == ctx.outputs[0].shape &&
         key.has_bias == ctx.has_input(2) && key.has_residual == ctx.has_input(3);
}

// oneDNN splits a primitive's work for the OpenMP thread count at its creation. A context may run a
// call on one thread or on all of its threads (intra_op_threads.hpp, ThreadCountChoice), so a layer
// keeps its primitives per thread count in two slots: one thread, and the context's count.
size_t thread_slot(int threads) { return threads > 1 ? 1 : 0; }

// One primitive of a layer and everything it reuses between calls. `user_*` memories describe the
// caller's tensors (their data handles are set per call); the others are the primitive's layouts,
// with buffers only where they differ from the caller's.
struct ConvPlan {
  dnnl::convolution_forward primitive;
  memory user_src, user_weights, user_bias, user_dst, user_residual;
  memory src, weights, dst;
  bool reorder_src = false, reorder_weights = false, reorder_dst = false;
  dnnl::reorder src_reorder, weights_reorder, dst_reorder, residual_reorder;
  // Where oneDNN has no direct reorder from the caller's weight layout (KRSC into Winograd's), the
  // weights go through plain OIHW first.
  memory plain_weights;
  dnnl::reorder plain_weights_reorder;
  bool weights_ready = false;  // constant weights already reordered into `weights`
};

// A layer's primitives for one OpenMP thread count: Winograd's where it applies, else the direct
// convolution; and for a Winograd layer the direct one, built on the first call whose tensors hold
// a NaN or an infinity (Winograd's transforms spread those over whole output tiles).
struct ConvPrimitives {
  int threads = 0;  // 0: not built yet
  ConvPlan main;
  std::unique_ptr<ConvPlan> direct;
};

struct ConvState final : KernelState {
  ConvKey key;
  bool declined = false;  // oneDNN has no implementation for this case: the reference runs
  dnnl::stream stream;
  FusedActivation activation;
  bool winograd = false;
  nn::ConvGeometry geometry;  // what the primitives are built from
  bool nhwc = false;
  ConvPrimitives by_threads[2];  // thread_slot()
};

// Packed weights are the same bytes whatever the thread count: a plan whose weight layout is another
// plan's shares its buffer (each still packs it on its first call, which rewrites the same bytes).
void share_weights(ConvPlan& plan, const ConvPlan& other) {
  if (plan.reorder_weights && other.reorder_weights && other.weights &&
      plan.weights.get_desc() == other.weights.get_desc()) {
    plan.weights = other.weights;
  }
}

// Layout of the primitive's src/dst. "any" lets oneDNN choose (blocked on AVX2/AVX-512, with a
// reorder around each convolution); "plain" keeps the caller's layout (no reorders, but oneDNN
// then often runs im2col+GEMM). KILN_ONEDNN_CONV_LAYOUT is for measurement.
bool plain_activations() {
  const char* value = std::getenv("KILN_ONEDNN_CONV_LAYOUT");
  return value != nullptr && std::string_view(value) == "plain";
}

// KILN_CPU_WINOGRAD=off keeps the direct convolution everywhere (for comparisons).
bool winograd_allowed() {
  const char* value = std::getenv("KILN_CPU_WINOGRAD");
  return value == nullptr || std::string_view(value) != "off";
}

// Winograd's candidates: 2-D 3x3 convolutions with stride 1, no dilation and no groups, 64 channels
// or more each side, and weights that are the engine's, finite (checked once). oneDNN's F(2x2,3x3)
// and F(4x4,3x3) kernels ran ResNet's 3x3 layers of 14x14 to 56x56 pixels 1.2 to 1.6 times as fast
// as the direct kernel on AVX-512 (their reorders from and to NHWC included), but read 16/9 or 4
// times the weight bytes: below about 196 output pixels per call (ResNet's 7x7 layers at batch 1)
// that made them slower.
bool winograd_candidate(const KernelContext& ctx, const nn::ConvGeometry& g) {
  const nn::Window3d& w = g.window;
  if (ctx.inputs[0].shape.size() != 4 || g.group != 1 || g.channels < 64 || g.out_channels < 64) return false;
  if (g.batch * w.out[1] * w.out[2] < 196) return false;
  for (size_t i = 1; i < 3; ++i) {
    if (w.kernel[i] != 3 || w.stride[i] != 1 || w.dilation[i] != 1) return false;
  }
  if (!winograd_allowed() || !ctx.input_is_constant(1)) return false;
  return simd::all_finite(ctx.inputs[1].as<const float>(), ctx.inputs[1].numel());
}

// Builds a primitive for this call's shapes with `algorithm`; returns false when oneDNN has no
// implementation.
bool make_plan(const KernelContext& ctx, const nn::ConvGeometry& g, bool nhwc, dnnl::algorithm algorithm,
               ConvPlan& s) {
  const nn::Window3d& w = g.window;
  const bool three_d = ctx.inputs[0].shape.size() == 5;
  // 1-D convolutions run as 2-D ones of height 1 (the same memory); 3-D as 3-D.
  const size_t first = three_d ? 0 : 1;
  memory::dims spatial_in, spatial_out, kernel, strides, dilations, pad_l, pad_r;
  for (size_t i = first; i < 3; ++i) {
    spatial_in.push_back(w.in[i]);
    spatial_out.push_back(w.out[i]);
    kernel.push_back(w.kernel[i]);
    strides.push_back(w.stride[i]);
    dilations.push_back(w.dilation[i] - 1);  // oneDNN counts the gaps
    pad_l.push_back(w.pad_begin[i]);
    pad_r.push_back(w.pad_end[i]);
  }
  memory::dims src_dims{g.batch, g.channels};
  src_dims.insert(src_dims.end(), spatial_in.begin(), spatial_in.end());
  memory::dims dst_dims{g.batch, g.out_channels};
  dst_dims.insert(dst_dims.end(), spatial_out.begin(), spatial_out.end());
  const bool grouped = g.group > 1;
  memory::dims weight_dims =
      grouped ? memory::dims{g.group, g.out_channels / g.group, g.channels / g.group}
              : memory::dims{g.out_channels, g.channels};
  weight_dims.insert(weight_dims.end(), kernel.begin(), kernel.end());

  const Tag activation_tag = nhwc ? Tag::nhwc : three_d ? Tag::ncdhw : Tag::nchw;
  const Tag weight_tag = nhwc ? (grouped ? Tag::gohwi : Tag::ohwi)
                              : three_d ? (grouped ? Tag::goidhw : Tag::oidhw)
                                        : (grouped ? Tag::goihw : Tag::oihw);
  const auto f32 = memory::data_type::f32;
  const memory::desc user_src(src_dims, f32, activation_tag);
  const memory::desc user_dst(dst_dims, f32, activation_tag);
  const memory::desc user_weights(weight_dims, f32, weight_tag);
  const memory::desc bias({g.out_channels}, f32, Tag::x);
  // Winograd runs on blocked layouts only: its activations are reordered around it.
  const bool plain = (nhwc || plain_activations()) && algorithm == dnnl::algorithm::convolution_direct;
  const memory::desc src_any = plain ? user_src : memory::desc(src_dims, f32, Tag::any);
  const memory::desc dst_any = plain ? user_dst : memory::desc(dst_dims, f32, Tag::any);
  const memory::desc weights_any(weight_dims, f32, Tag::any);

  const auto desc = g.has_bias
      ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, algorithm, src_any, weights_any,
                                        bias, dst_any, strides, dilations, pad_l, pad_r)
      : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, algorithm, src_any, weights_any,
                                        dst_any, strides, dilations, pad_l, pad_r);
  // The residual is a sum post-op (dst holds it before the primitive runs). The activation is not a
  // post-op: oneDNN's relu and clip (max/min with the bound) turn NaN into the bound, while kiln's
  // (and ONNX Runtime's, PyTorch's) keep NaN, so it runs as kiln's vector pass after the primitive,
  // on the output still in cache.
  dnnl::post_ops post_ops;
  if (ctx.has_input(3)) post_ops.append_sum(1.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(post_ops);
  dnnl::convolution_forward::primitive_desc pd;
  try {
    pd = dnnl::convolution_forward::primitive_desc(desc, attr, cpu_engine());
  } catch (const dnnl::error&) {
    return false;
  }
  dnnl::engine& engine = cpu_engine();
  s.primitive = dnnl::convolution_forward(pd);
  s.user_src = memory(user_src, engine, DNNL_MEMORY_NONE);
  s.user_dst = memory(user_dst, engine, DNNL_MEMORY_NONE);
  s.user_weights = memory(user_weights, engine, DNNL_MEMORY_NONE);
  s.user_bias = memory(bias, engine, DNNL_MEMORY_NONE);
  s.user_residual = memory(user_dst, engine, DNNL_MEMORY_NONE);
  s.reorder_src = pd.src_desc() != user_src;
  s.reorder_dst = pd.dst_desc() != user_dst;
  s.reorder_weights = pd.weights_desc() != user_weights;
  s.src = s.reorder_src ? memory(pd.src_desc(), engine) : s.user_src;
  s.dst = s.reorder_dst ? memory(pd.dst_desc(), engine) : s.user_dst;
  s.weights = s.reorder_weights ? memory(pd.weights_desc(), engine) : s.user_weights;
  if (s.reorder_src) s.src_reorder = dnnl::reorder(s.user_src, s.src);
  if (s.reorder_weights) {
    try {
      s.weights_reorder = dnnl::reorder(s.user_weights, s.weights);
    } catch (const dnnl::error&) {
      s.plain_weights = memory(memory::desc(weight_dims, f32, grouped ? Tag::goihw : Tag::oihw), engine);
      s.plain_weights_reorder = dnnl::reorder(s.user_weights, s.plain_weights);
      s.weights_reorder = dnnl::reorder(s.plain_weights, s.weights);
    }
  }
  if (s.reorder_dst) {
    s.dst_reorder = dnnl::reorder(s.dst, s.user_dst);
    if (ctx.has_input(3)) s.residual_reorder = dnnl::reorder(s.user_residual, s.dst);
  }
  s.weights_ready = false;
  return true;
}

// Builds the layer's state for this call's shapes and thread count; false when oneDNN has no
// implementation.
bool prepare(const KernelContext& ctx, const nn::ConvGeometry& g, bool nhwc, ConvState& s) {
  s.stream = dnnl::stream(cpu_engine());
  s.activation = fused_activation_of(ctx);
  s.geometry = g;
  s.nhwc = nhwc;
  const int threads = current_intra_op_threads();
  ConvPrimitives& slot = s.by_threads[thread_slot(threads)];
  s.winograd = winograd_candidate(ctx, g) && make_plan(ctx, g, nhwc, dnnl::algorithm::convolution_winograd, slot.main);
  if (!s.winograd && !make_plan(ctx, g, nhwc, dnnl::algorithm::convolution_direct, slot.main)) return false;
  slot.threads = threads;
  return true;
}

// The primitives for the current thread count, built on first use; null when oneDNN has none.
ConvPrimitives* primitives_for_this_call(const KernelContext& ctx, ConvState& s) {
  const int threads = current_intra_op_threads();
  const size_t index = thread_slot(threads);
  ConvPrimitives& slot = s.by_threads[index];
  if (slot.threads == threads) return &slot;
  slot = ConvPrimitives{};
  const auto algorithm = s.winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
  if (!make_plan(ctx, s.geometry, s.nhwc, algorithm, slot.main)) return nullptr;
  share_weights(slot.main, s.by_threads[1 - index].main);
  slot.threads = threads;
  return &slot;
}

// Shapes viewed in NCHW order, for the checks the reference makes.
struct NchwViews {
  std::vector<TensorView> inputs;
  std::vector<TensorView> outputs;
};

NchwViews nchw_views(const KernelContext& ctx) {
  NchwViews v{std::vector<TensorView>(ctx.inputs.begin(), ctx.inputs.end()),
              std::vector<TensorView>(ctx.outputs.begin(), ctx.outputs.end())};
  for (size_t i : {size_t{0}, size_t{1}, size_t{3}}) {
    if (i < v.inputs.size() && v.inputs[i].data && v.inputs[i].shape.size() == 4) {
      v.inputs[i].shape = ops::nn::nhwc_to_nchw(v.inputs[i].shape);
    }
  }
  if (v.outputs[0].shape.size() == 4) v.outputs[0].shape = ops::nn::nhwc_to_nchw(v.outputs[0].shape);
  return v;
}

void run_plan(KernelContext& ctx, dnnl::stream& stream, ConvPlan& s) {
  auto* y = ctx.outputs[0].as<float>();
  s.user_src.set_data_handle(const_cast<void*>(ctx.inputs[0].data));
  s.user_dst.set_data_handle(y);
  if (s.reorder_src) s.src_reorder.execute(stream, s.user_src, s.src);
  if (!s.reorder_weights) {
    s.user_weights.set_data_handle(const_cast<void*>(ctx.inputs[1].data));
  } else if (!s.weights_ready) {
    s.user_weights.set_data_handle(const_cast<void*>(ctx.inputs[1].data));
    if (s.plain_weights) {
      s.plain_weights_reorder.execute(stream, s.user_weights, s.plain_weights);
      s.weights_reorder.execute(stream, s.plain_weights, s.weights);
    } else {
      s.weights_reorder.execute(stream, s.user_weights, s.weights);
    }
    // Engine weights never change: reorder them once per context.
    s.weights_ready = ctx.input_is_constant(1);
    if (s.weights_ready && s.plain_weights) {  // the plain copy was only a step on the way
      stream.wait();
      s.plain_weights = memory();
      s.plain_weights_reorder = dnnl::reorder();
    }
  }
  if (ctx.has_input(3)) {
    const TensorView& residual = ctx.inputs[3];
    if (s.reorder_dst) {
      s.user_residual.set_data_handle(const_cast<void*>(residual.data));
      s.residual_reorder.execute(stream, s.user_residual, s.dst);
    } else if (residual.data != y) {
      std::memcpy(y, residual.data, static_cast<size_t>(residual.numel()) * sizeof(float));
    }
  }
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, s.src}, {DNNL_ARG_WEIGHTS, s.weights}, {DNNL_ARG_DST, s.dst}};
  if (ctx.has_input(2)) {
    s.user_bias.set_data_handle(const_cast<void*>(ctx.inputs[2].data));
    args.emplace(DNNL_ARG_BIAS, s.user_bias);
  }
  s.primitive.execute(stream, args);
  if (s.reorder_dst) s.dst_reorder.execute(stream, s.dst, s.user_dst);
  stream.wait();
}

// Runs the layer: Winograd when its input and residual are finite, else the direct convolution.
// False when oneDNN has no primitive for this thread count (the reference then runs).
bool run_prepared(KernelContext& ctx, ConvState& s) {
  ConvPrimitives* primitives = primitives_for_this_call(ctx, s);
  if (primitives == nullptr) return false;
  bool finite = true;
  if (s.winograd) {
    finite = simd::all_finite(ctx.inputs[0].as<const float>(), ctx.inputs[0].numel()) &&
             (!ctx.has_input(3) || simd::all_finite(ctx.inputs[3].as<const float>(), ctx.inputs[3].numel()));
  }
  if (finite) {
    run_plan(ctx, s.stream, primitives->main);
  } else {
    if (!primitives->direct) {
      auto direct = std::make_unique<ConvPlan>();
      if (!make_plan(ctx, s.geometry, s.nhwc, dnnl::algorithm::convolution_direct, *direct)) {
        ctx.fail(ErrorCode::kInternal, "oneDNN has a Winograd convolution but no direct one for this layer");
      }
      primitives->direct = std::move(direct);
    }
    run_plan(ctx, s.stream, *primitives->direct);
  }
  apply_fused_activation(s.activation, ctx.outputs[0].as<float>(), ctx.outputs[0].numel());
  return true;
}

// ---- MatMul -------------------------------------------------------------------------------------

// What a prepared MatMul depends on besides its attributes: rebuilt on change.
struct MatmulKey {
  Shape a, b, y;
  bool has_bias = false;
};

bool same_key(const MatmulKey& key, const KernelContext& ctx) {
  return key.a == ctx.inputs[0].shape && key.b == ctx.inputs[1].shape && key.y == ctx.outputs[0].shape &&
         key.has_bias == ctx.has_input(2);
}

// One MatMul (or Gemm) layer's primitive for one thread count, with its constant B packed once into
// the layout oneDNN chose.
struct MatmulState {
  int threads = 0;  // 0: not built yet
  bool declined = false;
  dnnl::stream stream;
  dnnl::matmul primitive;
  bool relu = false;
  memory user_a, user_b, user_bias, user_dst;
  memory weights;
  bool reorder_weights = false;
  dnnl::reorder weights_reorder;
  bool weights_ready = false;
};

// Gemm's B is stored [N, K] when transB = 1.
bool transposed_b(const KernelContext& ctx) {
  return ctx.op == "Gemm" && ctx.attrs.get_int_or("transB", 0) != 0;
}

// A [.., M, K] x B [K, N] (+ bias [N]) with B constant, as one [rows, K] x [K, N] product:
// the call shapes the reference accepts, else false (the reference then reports what is wrong).
// Gemm: A [M, K] (transA = 0), alpha = 1, and C absent (or beta = 0) or a bias of N elements
// ([N] or [1, N]) with beta = 1.
bool matmul_shapes_fit(const KernelContext& ctx, int64_t& rows, int64_t& k, int64_t& n) {
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  if (a.shape.size() < 2 || b.shape.size() != 2) return false;
  const bool gemm = ctx.op == "Gemm";
  if (gemm) {
    if (a.shape.size() != 2 || ctx.attrs.get_int_or("transA", 0) != 0 || ctx.attrs.get_float_or("alpha", 1.0f) != 1.0f) {
      return false;
    }
    if (ctx.has_input(2)) {
      const Shape& c = ctx.inputs[2].shape;
      const bool row = c.size() == 1 || (c.size() == 2 && c[0] == 1);
      if (!row || ctx.attrs.get_float_or("beta", 1.0f) != 1.0f) return false;
    }
  }
  k = a.shape.back();
  const bool transposed = transposed_b(ctx);
  n = transposed ? b.shape[0] : b.shape[1];
  if ((transposed ? b.shape[1] : b.shape[0]) != k || k == 0 || n == 0) return false;
  rows = a.numel() / k;
  Shape expected(a.shape.begin(), a.shape.end() - 1);
  expected.push_back(n);
  if (ctx.outputs[0].shape != expected || rows == 0) return false;
  if (ctx.has_input(2) && (ctx.inputs[2].numel() != n || ctx.inputs[2].dtype != DType::kFloat32)) return false;
  return true;
}

bool prepare_matmul(const KernelContext& ctx, int64_t rows, int64_t k, int64_t n, MatmulState& s) {
  const auto f32 = memory::data_type::f32;
  const memory::desc a_md({rows, k}, f32, Tag::ab);
  const memory::desc b_md({k, n}, f32, transposed_b(ctx) ? Tag::ba : Tag::ab);
  const memory::desc b_any({k, n}, f32, Tag::any);
  const memory::desc bias_md({1, n}, f32, Tag::ab);
  const memory::desc dst_md({rows, n}, f32, Tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = ctx.has_input(2) ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_any, bias_md, dst_md), cpu_engine())
                          : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_any, dst_md), cpu_engine());
  } catch (const dnnl::error&) {
    return false;
  }
  dnnl::engine& engine = cpu_engine();
  s.stream = dnnl::stream(engine);
  s.primitive = dnnl::matmul(pd);
  s.relu = ctx.attrs.get_string_or("kiln_activation", "") == "Relu";
  s.user_a = memory(a_md, engine, DNNL_MEMORY_NONE);
  s.user_b = memory(b_md, engine, DNNL_MEMORY_NONE);
  s.user_bias = memory(bias_md, engine, DNNL_MEMORY_NONE);
  s.user_dst = memory(dst_md, engine, DNNL_MEMORY_NONE);
  s.reorder_weights = pd.weights_desc() != b_md;
  s.weights = s.reorder_weights ? memory(pd.weights_desc(), engine) : s.user_b;
  if (s.reorder_weights) s.weights_reorder = dnnl::reorder(s.user_b, s.weights);
  s.weights_ready = false;
  return true;
}

// A MatMul layer's primitives per thread slot (thread_slot()).
struct MatmulLayer final : KernelState {
  MatmulKey key;
  MatmulState by_threads[2];
};

void run_matmul(KernelContext& ctx, MatmulState& s) {
  auto* y = ctx.outputs[0].as<float>();
  s.user_a.set_data_handle(const_cast<void*>(ctx.inputs[0].data));
  s.user_dst.set_data_handle(y);
  if (!s.reorder_weights) {
    s.user_b.set_data_handle(const_cast<void*>(ctx.inputs[1].data));
  } else if (!s.weights_ready) {
    s.user_b.set_data_handle(const_cast<void*>(ctx.inputs[1].data));
    s.weights_reorder.execute(s.stream, s.user_b, s.weights);
    s.weights_ready = true;  // B is an engine weight (checked by the caller): packed once
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, s.user_a}, {DNNL_ARG_WEIGHTS, s.weights}, {DNNL_ARG_DST, s.user_dst}};
  if (ctx.has_input(2)) {
    s.user_bias.set_data_handle(const_cast<void*>(ctx.inputs[2].data));
    args.emplace(DNNL_ARG_BIAS, s.user_bias);
  }
  s.primitive.execute(s.stream, args);
  s.stream.wait();
  if (s.relu) apply_fused_activation(FusedActivation{FusedActivation::Kind::kRelu}, y, ctx.outputs[0].numel());
}

}  // namespace

bool try_run_matmul_on_library(KernelContext& ctx) {
  if (ctx.state == nullptr || !ctx.input_is_constant(1)) return false;
  if (ctx.inputs[0].dtype != DType::kFloat32 || ctx.inputs[1].dtype != DType::kFloat32 ||
      ctx.outputs[0].dtype != DType::kFloat32) {
    return false;
  }
  const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
  if (!activation.empty() && activation != "Relu") return false;
  int64_t rows = 0, k = 0, n = 0;
  if (!matmul_shapes_fit(ctx, rows, k, n)) return false;
  const int thread_count = current_intra_op_threads();
  const OpenMpThreadsScope threads(thread_count);
  auto* layer = dynamic_cast<MatmulLayer*>(ctx.state->get());
  if (layer == nullptr || !same_key(layer->key, ctx)) {
    auto fresh = std::make_unique<MatmulLayer>();
    fresh->key = MatmulKey{ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.outputs[0].shape, ctx.has_input(2)};
    layer = fresh.get();
    *ctx.state = std::move(fresh);
  }
  const size_t index = thread_slot(thread_count);
  MatmulState* state = &layer->by_threads[index];
  if (state->threads != thread_count) {
    *state = MatmulState{};
    state->threads = thread_count;
    state->declined = !prepare_matmul(ctx, rows, k, n, *state);
    // Packed B is the same bytes whatever the thread count: share the other slot's buffer.
    const MatmulState& other = layer->by_threads[1 - index];
    if (!state->declined && state->reorder_weights && other.threads != 0 && !other.declined &&
        other.reorder_weights && other.weights.get_desc() == state->weights.get_desc()) {
      state->weights = other.weights;
    }
  }
  if (state->declined) return false;
  try {
    run_matmul(ctx, *state);
  } catch (const dnnl::error& error) {
    ctx.fail(ErrorCode::kInternal, "oneDNN matmul failed: ", error.what());
  }
  return true;
}

std::string describe_library() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + ", ISA " + isa_name(dnnl::get_effective_cpu_isa());
}

bool try_run_conv_on_library(KernelContext& ctx) {
  if (ctx.state == nullptr) return false;
  const size_t rank = ctx.inputs[0].shape.size();
  if (rank < 3 || rank > 5 || ctx.outputs[0].numel() == 0 || ctx.inputs[0].numel() == 0) {
    return false;
  }
  for (size_t i = 0; i < ctx.inputs.size() && i < 4; ++i) {
    if (ctx.has_input(i) && ctx.inputs[i].dtype != DType::kFloat32) return false;
  }
  if (ctx.outputs[0].dtype != DType::kFloat32) return false;
  const bool nhwc = ops::nn::is_nhwc_layout(ctx.attrs);
  if (nhwc && rank != 4) return false;

  // The primitive is created (its work split) and run with the context's thread count.
  const OpenMpThreadsScope threads(current_intra_op_threads());
  auto* state = dynamic_cast<ConvState*>(ctx.state->get());
  if (state == nullptr || !same_key(state->key, ctx)) {
    // Checked as the reference checks them, in NCHW order.
    NchwViews views = nhwc ? nchw_views(ctx) : NchwViews{};
    const KernelContext nchw{ctx.node_name, ctx.op, ctx.attrs,
                             nhwc ? std::span<const TensorView>(views.inputs) : ctx.inputs,
                             nhwc ? std::span<TensorView>(views.outputs) : ctx.outputs};
    const nn::ConvGeometry geometry = nn::check_conv_call(nchw);
    if (ctx.has_input(3) && ctx.inputs[3].shape != ctx.outputs[0].shape) {
      ctx.fail(ErrorCode::kInvalidArgument, "residual ", shape_to_string(ctx.inputs[3].shape),
               " must have the output's shape ", shape_to_string(ctx.outputs[0].shape));
    }
    fused_activation_of(ctx);  // fails for an activation the CPU does not apply
    auto fresh = std::make_unique<ConvState>();
    fresh->key = key_of(ctx);
    fresh->declined = !prepare(ctx, geometry, nhwc, *fresh);
    state = fresh.get();
    *ctx.state = std::move(fresh);
  }
  if (state->declined) return false;
  try {
    return run_prepared(ctx, *state);
  } catch (const dnnl::error& error) {
    ctx.fail(ErrorCode::kInternal, "oneDNN convolution failed: ", error.what());
  }
}


}  // namespace kiln::cpu::onednn

namespace kiln::cpu::onednn {
namespace {

#if KILN_ONEDNN_OPENMP_TEAM
// The pools' jobs on oneDNN's own OpenMP team (intra_op_threads.hpp, SharedTeamRun). Dynamic
// scheduling: a job's tasks are chunks that need not cost the same.
void run_on_openmp_team(size_t count, int threads, void (*body)(void* arg, size_t index), void* arg) {
  const auto total = static_cast<long long>(count);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (long long i = 0; i < total; ++i) body(arg, static_cast<size_t>(i));
}
constexpr SharedTeamRun kTeam = &run_on_openmp_team;
#else
constexpr SharedTeamRun kTeam = nullptr;
#endif

}  // namespace
}  // namespace kiln::cpu::onednn

extern "C" const kiln::cpu::onednn::LibraryEntry* kiln_cpu_onednn_entry(const char* runtime_version) {
  static const kiln::cpu::onednn::LibraryEntry entry{
      &kiln::cpu::onednn::describe_library, &kiln::cpu::onednn::try_run_conv_on_library,
      &kiln::cpu::onednn::try_run_matmul_on_library, kiln::cpu::onednn::kTeam};
  // The two libraries share C++ types (KernelContext, LayerState): only one build's pair may meet.
  if (runtime_version == nullptr || std::strcmp(runtime_version, KILN_VERSION) != 0) return nullptr;
  return &entry;
}
