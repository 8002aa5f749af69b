// RoiAlign on the CPU in double precision (float32, float16/bfloat16 converted, and float64 X).
// Each output bin averages (or maxes) grid_h x grid_w bilinear samples at the centres of its
// sub-cells; a sample more than one pixel outside X contributes 0. In max mode a sample is the
// largest of its four weighted corner values, as in ONNX's definition (and ONNX Runtime).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"

namespace kiln::cpu {
namespace {

// One bilinear sample: four flat positions in an H x W plane and their weights.
struct Sample {
  int64_t pos[4] = {0, 0, 0, 0};
  double weight[4] = {0.0, 0.0, 0.0, 0.0};
};

Sample bilinear_sample(double y, double x, int64_t height, int64_t width) {
  Sample s;
  if (y < -1.0 || y > static_cast<double>(height) || x < -1.0 || x > static_cast<double>(width)) {
    return s;  // outside: zero weights
  }
  y = std::max(y, 0.0);
  x = std::max(x, 0.0);
  int64_t y_low = static_cast<int64_t>(y);
  int64_t x_low = static_cast<int64_t>(x);
  int64_t y_high = y_low + 1;
  int64_t x_high = x_low + 1;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<double>(y_low);
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<double>(x_low);
  }
  const double ly = y - static_cast<double>(y_low), lx = x - static_cast<double>(x_low);
  const double hy = 1.0 - ly, hx = 1.0 - lx;
  s.pos[0] = y_low * width + x_low;
  s.pos[1] = y_low * width + x_high;
  s.pos[2] = y_high * width + x_low;
  s.pos[3] = y_high * width + x_high;
  s.weight[0] = hy * hx;
  s.weight[1] = hy * lx;
  s.weight[2] = ly * hx;
  s.weight[3] = ly * lx;
  return s;
}

template <typename T>
void roi_align(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& rois = ctx.inputs[1];
  const TensorView& batch_indices = ctx.inputs[2];
  const int64_t batch = x.shape[0], channels = x.shape[1], height = x.shape[2],
                width = x.shape[3];
  const int64_t regions = rois.shape[0];
  const int64_t out_h = ctx.attrs.get_int_or("output_height", 1);
  const int64_t out_w = ctx.attrs.get_int_or("output_width", 1);
  const int64_t sampling_ratio = ctx.attrs.get_int_or("sampling_ratio", 0);
  const double spatial_scale = ctx.attrs.get_float_or("spatial_scale", 1.0f);
  const bool max_mode = ctx.attrs.get_string_or("mode", "avg") == "max";
  const bool half_pixel =
      ctx.attrs.get_string_or("coordinate_transformation_mode", "half_pixel") == "half_pixel";
  nn::require_output_shape(ctx, 0, Shape{regions, channels, out_h, out_w});
  const T* x_data = x.as<const T>();
  const T* roi_data = rois.as<const T>();
  const int64_t* index_data = batch_indices.as<const int64_t>();
  T* y = ctx.outputs[0].as<T>();
  const double offset = half_pixel ? 0.5 : 0.0;
  std::vector<Sample> samples;
  for (int64_t r = 0; r < regions; ++r) {
    const int64_t b = index_data[r];
    if (b < 0 || b >= batch) {
      ctx.fail(ErrorCode::kInvalidArgument, "input 2 (batch_indices) [", r, "] = ", b,
               " is outside [0, ", batch, ") (X has ", batch, " images)");
    }
    const T* roi = roi_data + r * 4;
    const double start_w = static_cast<double>(roi[0]) * spatial_scale - offset;
    const double start_h = static_cast<double>(roi[1]) * spatial_scale - offset;
    double roi_w = static_cast<double>(roi[2]) * spatial_scale - offset - start_w;
    double roi_h = static_cast<double>(roi[3]) * spatial_scale - offset - start_h;
    if (!half_pixel) {  // output_half_pixel forces malformed regions to 1 x 1
      roi_w = std::max(roi_w, 1.0);
      roi_h = std::max(roi_h, 1.0);
    }
    const double bin_h = roi_h / static_cast<double>(out_h);
    const double bin_w = roi_w / static_cast<double>(out_w);
    const int64_t grid_h =
        sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(std::ceil(roi_h / out_h));
    const int64_t grid_w =
        sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(std::ceil(roi_w / out_w));
    const double count = static_cast<double>(std::max<int64_t>(grid_h * grid_w, 1));
    // The samples are the same for every channel: compute them once per region.
    samples.clear();
    for (int64_t ph = 0; ph < out_h; ++ph) {
      for (int64_t pw = 0; pw < out_w; ++pw) {
        for (int64_t iy = 0; iy < grid_h; ++iy) {
          const double sy = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h;
          for (int64_t ix = 0; ix < grid_w; ++ix) {
            const double sx = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w;
            samples.push_back(bilinear_sample(sy, sx, height, width));
          }
        }
      }
    }
    const size_t per_bin = static_cast<size_t>(std::max<int64_t>(grid_h * grid_w, 0));
    for (int64_t c = 0; c < channels; ++c) {
      const T* plane = x_data + (b * channels + c) * height * width;
      T* out = y + (r * channels + c) * out_h * out_w;
      for (int64_t bin = 0; bin < out_h * out_w; ++bin) {
        double value = 0.0;
        bool first = true;
        for (size_t k = 0; k < per_bin; ++k) {
          const Sample& s = samples[static_cast<size_t>(bin) * per_bin + k];
          if (max_mode) {
            double sample_max = s.weight[0] * static_cast<double>(plane[s.pos[0]]);
            for (int corner = 1; corner < 4; ++corner) {
              const double weighted = s.weight[corner] * static_cast<double>(plane[s.pos[corner]]);
              sample_max = std::max(sample_max, weighted);
            }
            value = first ? sample_max : std::max(value, sample_max);
            first = false;
          } else {
            for (int corner = 0; corner < 4; ++corner) {
              value += s.weight[corner] * static_cast<double>(plane[s.pos[corner]]);
            }
          }
        }
        out[bin] = static_cast<T>(max_mode ? value : value / count);
      }
    }
  }
}

void roi_align_kernel(KernelContext& ctx) {
  const DType dtype = ctx.inputs[0].dtype;
  if (ctx.inputs[1].dtype != dtype || ctx.outputs[0].dtype != dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "X, rois and Y must share one dtype, got ",
             dtype_name(dtype), ", ", dtype_name(ctx.inputs[1].dtype), " and ",
             dtype_name(ctx.outputs[0].dtype));
  }
  if (dtype == DType::kFloat64) {
    roi_align<double>(ctx);
  } else if (dtype == DType::kFloat32) {
    roi_align<float>(ctx);
  } else {
    ctx.fail(ErrorCode::kUnsupported, "input 0 (X) has unsupported dtype ", dtype_name(dtype),
             "; supported: float32, float16, bfloat16, float64");
  }
}

}  // namespace

void register_roi_align_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<roi_align_kernel>(registry, "RoiAlign");
}

}  // namespace kiln::cpu
