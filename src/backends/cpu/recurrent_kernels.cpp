// RNN, GRU and LSTM on the CPU (the reference; no CUDA kernels), float32 (float16/bfloat16 arrive
// as float32) and float64, accumulating in double.
//
// Each direction runs each batch row over its own length (sequence_lens, else seq): the forward
// direction from step 0, the reverse one from step length - 1 down to 0. Steps at or past a row's
// length write zeros to Y; Y_h (and Y_c) hold the state after the row's last step, zeros for a
// row of length 0 (as ONNX Runtime does). `clip` bounds every gate's pre-activation (not the cell
// state LSTM's h reads: ONNX Runtime's reading of the spec). Gates, as ONNX orders them in W, R
// and B: RNN i; GRU z, r, h; LSTM i, o, f, c (peepholes P: i, o, f).
#include <algorithm>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/nn_recurrent.hpp"

namespace kiln::cpu {
namespace {

using ops::nn::RecurrentCell;
using ops::nn::RecurrentDirection;
using ops::nn::RecurrentParams;

// Sizes and layout of one node's tensors.
struct Geometry {
  int64_t seq = 0, batch = 0, input = 0, hidden = 0, dirs = 1, gates = 1;
  bool batch_first = false;

  int64_t x_offset(int64_t t, int64_t b) const { return (batch_first ? b * seq + t : t * batch + b) * input; }
  int64_t y_offset(int64_t t, int64_t d, int64_t b) const {
    return (batch_first ? (b * seq + t) * dirs + d : (t * dirs + d) * batch + b) * hidden;
  }
  int64_t state_offset(int64_t d, int64_t b) const { return (batch_first ? b * dirs + d : d * batch + b) * hidden; }
};

void require_shape(const KernelContext& ctx, size_t index, const char* what, const Shape& want) {
  if (!ctx.has_input(index)) return;
  if (ctx.inputs[index].shape != want) {
    ctx.fail(ErrorCode::kInvalidArgument, "input ", index, " (", what, ") has shape ",
             shape_to_string(ctx.inputs[index].shape), ", expected ", shape_to_string(want));
  }
}

Geometry check_shapes(const KernelContext& ctx, const RecurrentParams& params) {
  const Shape& x = ctx.inputs[0].shape;
  const Shape& r = ctx.inputs[2].shape;
  if (x.size() != 3 || r.size() != 3) {
    ctx.fail(ErrorCode::kInvalidArgument, "X ", shape_to_string(x), " and R ", shape_to_string(r), " must be 3-D");
  }
  Geometry g;
  g.batch_first = params.batch_first;
  g.seq = g.batch_first ? x[1] : x[0];
  g.batch = g.batch_first ? x[0] : x[1];
  g.input = x[2];
  g.hidden = r[2];
  g.dirs = params.num_directions;
  g.gates = params.gates();
  if (params.hidden_size != -1 && params.hidden_size != g.hidden) {
    ctx.fail(ErrorCode::kInvalidArgument, "attribute 'hidden_size' is ", params.hidden_size, " but R is ",
             shape_to_string(r));
  }
  const int64_t rows = g.gates * g.hidden;
  require_shape(ctx, 1, "W", {g.dirs, rows, g.input});
  require_shape(ctx, 2, "R", {g.dirs, rows, g.hidden});
  require_shape(ctx, 3, "B", {g.dirs, 2 * rows});
  require_shape(ctx, 4, "sequence_lens", {g.batch});
  const Shape state = g.batch_first ? Shape{g.batch, g.dirs, g.hidden} : Shape{g.dirs, g.batch, g.hidden};
  require_shape(ctx, 5, "initial_h", state);
  if (params.cell == RecurrentCell::kLstm) {
    require_shape(ctx, 6, "initial_c", state);
    require_shape(ctx, 7, "P", {g.dirs, 3 * g.hidden});
  }
  const Shape y = g.batch_first ? Shape{g.batch, g.seq, g.dirs, g.hidden} : Shape{g.seq, g.dirs, g.batch, g.hidden};
  for (size_t i = 0; i < ctx.outputs.size(); ++i) nn::require_output_shape(ctx, i, i == 0 ? y : state);
  return g;
}

std::vector<int64_t> sequence_lengths(const KernelContext& ctx, const Geometry& g) {
  if (!ctx.has_input(4)) return std::vector<int64_t>(static_cast<size_t>(g.batch), g.seq);
  std::vector<int64_t> lengths = read_indices(ctx.inputs[4]);
  for (size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] < 0 || lengths[b] > g.seq) {
      ctx.fail(ErrorCode::kInvalidArgument, "input 4 (sequence_lens) holds ", lengths[b], " for batch row ", b,
               "; lengths must lie in [0, ", g.seq, "] (X's sequence length)");
    }
  }
  return lengths;
}

// One direction's weights, as double.
struct DirectionWeights {
  std::vector<double> w, r, bias_w, bias_r, peephole;  // [rows, input], [rows, hidden], [rows] x2, [3 * hidden]
};

template <typename T>
std::vector<double> slice_as_double(const KernelContext& ctx, size_t index, int64_t begin, int64_t count) {
  std::vector<double> out(static_cast<size_t>(count), 0.0);
  if (!ctx.has_input(index)) return out;
  const T* data = ctx.inputs[index].as<const T>() + begin;
  for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = static_cast<double>(data[i]);
  return out;
}

template <typename T>
DirectionWeights direction_weights(const KernelContext& ctx, const Geometry& g, int64_t d) {
  const int64_t rows = g.gates * g.hidden;
  DirectionWeights dw;
  dw.w = slice_as_double<T>(ctx, 1, d * rows * g.input, rows * g.input);
  dw.r = slice_as_double<T>(ctx, 2, d * rows * g.hidden, rows * g.hidden);
  dw.bias_w = slice_as_double<T>(ctx, 3, d * 2 * rows, rows);
  dw.bias_r = slice_as_double<T>(ctx, 3, d * 2 * rows + rows, rows);
  dw.peephole = slice_as_double<T>(ctx, 7, d * 3 * g.hidden, 3 * g.hidden);
  return dw;
}

// out[j] = sum_k m[row0 + j][k] * v[k] for j in [0, count), m having `cols` columns.
void add_product(const std::vector<double>& m, int64_t row0, int64_t count, int64_t cols, const double* v,
                 double* out) {
  for (int64_t j = 0; j < count; ++j) {
    const double* row = m.data() + (row0 + j) * cols;
    double sum = 0.0;
    for (int64_t k = 0; k < cols; ++k) sum += row[k] * v[k];
    out[j] += sum;
  }
}

// Runs one direction over one batch row, writing Y's steps and returning the final state in h, c.
class RowRunner {
 public:
  RowRunner(const RecurrentParams& params, const Geometry& g, const DirectionWeights& dw, int64_t direction)
      : p_(params),
        g_(g),
        dw_(dw),
        d_(direction),
        gates_(static_cast<size_t>(g.gates * g.hidden)),
        update_(static_cast<size_t>(g.hidden)),
        reset_(static_cast<size_t>(g.hidden)),
        reset_h_(static_cast<size_t>(g.hidden)),
        recurrent_(static_cast<size_t>(g.hidden)) {}

  // One step from input x (input doubles) and state h, c (hidden doubles each; c LSTM only).
  void step(const double* x, std::vector<double>& h, std::vector<double>& c) {
    const int64_t H = g_.hidden, rows = g_.gates * H;
    for (int64_t j = 0; j < rows; ++j) gates_[static_cast<size_t>(j)] = dw_.bias_w[static_cast<size_t>(j)];
    add_product(dw_.w, 0, rows, g_.input, x, gates_.data());
    switch (p_.cell) {
      case RecurrentCell::kRnn: {
        add_product(dw_.r, 0, rows, H, h.data(), gates_.data());
        for (int64_t j = 0; j < H; ++j) h[j] = f(0, gates_[j] + dw_.bias_r[j]);
        break;
      }
      case RecurrentCell::kGru: {
        // z and r see R h; the candidate sees R (r h) or, linear_before_reset, r (R h + Rb).
        add_product(dw_.r, 0, 2 * H, H, h.data(), gates_.data());
        for (int64_t j = 0; j < H; ++j) {
          update_[j] = f(0, gates_[j] + dw_.bias_r[j]);
          reset_[j] = f(0, gates_[H + j] + dw_.bias_r[H + j]);
        }
        std::fill(recurrent_.begin(), recurrent_.end(), 0.0);
        if (p_.linear_before_reset) {
          add_product(dw_.r, 2 * H, H, H, h.data(), recurrent_.data());
          for (int64_t j = 0; j < H; ++j) recurrent_[j] = reset_[j] * (recurrent_[j] + dw_.bias_r[2 * H + j]);
        } else {
          for (int64_t j = 0; j < H; ++j) reset_h_[j] = reset_[j] * h[j];
          add_product(dw_.r, 2 * H, H, H, reset_h_.data(), recurrent_.data());
          for (int64_t j = 0; j < H; ++j) recurrent_[j] += dw_.bias_r[2 * H + j];
        }
        for (int64_t j = 0; j < H; ++j) {
          const double candidate = f(1, gates_[2 * H + j] + recurrent_[j]);
          h[j] = (1.0 - update_[j]) * candidate + update_[j] * h[j];
        }
        break;
      }
      case RecurrentCell::kLstm: {
        add_product(dw_.r, 0, rows, H, h.data(), gates_.data());
        for (int64_t j = 0; j < rows; ++j) gates_[j] += dw_.bias_r[j];
        const double* p_i = dw_.peephole.data();
        const double* p_o = p_i + H;
        const double* p_f = p_o + H;
        for (int64_t j = 0; j < H; ++j) {
          const double in = f(0, gates_[j] + p_i[j] * c[j]);
          const double forget = p_.input_forget ? 1.0 - in : f(0, gates_[2 * H + j] + p_f[j] * c[j]);
          const double cell = f(1, gates_[3 * H + j]);
          c[j] = forget * c[j] + in * cell;
          const double out = f(0, gates_[H + j] + p_o[j] * c[j]);
          h[j] = out * p_.activation(d_, 2).apply(c[j]);
        }
        break;
      }
    }
  }

 private:
  // Activation k of this direction applied to a clipped pre-activation.
  double f(size_t k, double x) const {
    if (p_.clip) x = std::clamp(x, -*p_.clip, *p_.clip);
    return p_.activation(d_, k).apply(x);
  }

  const RecurrentParams& p_;
  const Geometry& g_;
  const DirectionWeights& dw_;
  int64_t d_;
  std::vector<double> gates_;  // W x + Wb (+ R h + Rb but for GRU's candidate)
  // GRU only: the update and reset gates, r h, and the candidate's recurrent term.
  std::vector<double> update_, reset_, reset_h_, recurrent_;
};

template <typename T>
void run_recurrent(KernelContext& ctx, const RecurrentParams& params, const Geometry& g) {
  const std::vector<int64_t> lengths = sequence_lengths(ctx, g);
  const T* x = ctx.inputs[0].as<const T>();
  const T* initial_h = ctx.has_input(5) ? ctx.inputs[5].as<const T>() : nullptr;
  const bool lstm = params.cell == RecurrentCell::kLstm;
  const T* initial_c = lstm && ctx.has_input(6) ? ctx.inputs[6].as<const T>() : nullptr;
  T* y = !ctx.outputs.empty() ? ctx.outputs[0].as<T>() : nullptr;
  T* y_h = ctx.outputs.size() > 1 ? ctx.outputs[1].as<T>() : nullptr;
  T* y_c = ctx.outputs.size() > 2 ? ctx.outputs[2].as<T>() : nullptr;
  std::vector<double> h(static_cast<size_t>(g.hidden)), c(static_cast<size_t>(g.hidden));
  std::vector<double> x_t(static_cast<size_t>(g.input));
  for (int64_t d = 0; d < g.dirs; ++d) {
    const bool reverse = params.direction == RecurrentDirection::kReverse || d == 1;
    const DirectionWeights dw = direction_weights<T>(ctx, g, d);
    RowRunner runner(params, g, dw, d);
    for (int64_t b = 0; b < g.batch; ++b) {
      const int64_t state = g.state_offset(d, b);
      for (int64_t j = 0; j < g.hidden; ++j) {
        h[j] = initial_h ? static_cast<double>(initial_h[state + j]) : 0.0;
        c[j] = initial_c ? static_cast<double>(initial_c[state + j]) : 0.0;
      }
      const int64_t length = lengths[static_cast<size_t>(b)];
      for (int64_t s = 0; s < length; ++s) {
        const int64_t t = reverse ? length - 1 - s : s;
        const T* x_row = x + g.x_offset(t, b);
        for (int64_t k = 0; k < g.input; ++k) x_t[k] = static_cast<double>(x_row[k]);
        runner.step(x_t.data(), h, c);
        if (y) {
          T* y_row = y + g.y_offset(t, d, b);
          for (int64_t j = 0; j < g.hidden; ++j) y_row[j] = static_cast<T>(h[j]);
        }
      }
      if (y) {
        for (int64_t t = length; t < g.seq; ++t) std::fill_n(y + g.y_offset(t, d, b), g.hidden, T(0));
      }
      if (length == 0) {
        std::fill(h.begin(), h.end(), 0.0);
        std::fill(c.begin(), c.end(), 0.0);
      }
      for (int64_t j = 0; j < g.hidden; ++j) {
        if (y_h) y_h[state + j] = static_cast<T>(h[j]);
        if (y_c) y_c[state + j] = static_cast<T>(c[j]);
      }
    }
  }
}

void recurrent_kernel(KernelContext& ctx) {
  const RecurrentParams params = ops::nn::read_recurrent_params(nn::label_of(ctx), ctx.attrs);
  const DType dtype = ctx.inputs[0].dtype;
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 (X) has unsupported dtype ", dtype_name(dtype),
             "; supported: float32, float16, bfloat16, float64");
  }
  for (size_t i = 1; i < ctx.inputs.size(); ++i) {
    if (i != 4 && ctx.has_input(i) && ctx.inputs[i].dtype != dtype) {
      ctx.fail(ErrorCode::kInvalidArgument, "input ", i, " has dtype ", dtype_name(ctx.inputs[i].dtype),
               " but X has ", dtype_name(dtype));
    }
  }
  for (size_t i = 0; i < ctx.outputs.size(); ++i) {
    if (ctx.outputs[i].dtype != dtype) {
      ctx.fail(ErrorCode::kInvalidArgument, "output ", i, " has dtype ", dtype_name(ctx.outputs[i].dtype),
               " but X has ", dtype_name(dtype));
    }
  }
  const Geometry g = check_shapes(ctx, params);
  if (dtype == DType::kFloat64) {
    run_recurrent<double>(ctx, params, g);
  } else {
    run_recurrent<float>(ctx, params, g);
  }
}

}  // namespace

void register_recurrent_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<recurrent_kernel>(registry, "RNN");
  nn::add_float_kernel<recurrent_kernel>(registry, "GRU");
  nn::add_float_kernel<recurrent_kernel>(registry, "LSTM");
}

}  // namespace kiln::cpu
