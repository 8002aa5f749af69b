// kiln::DeformConv: creator and CPU kernel (deformable im2col, then a plain matrix product per
// group).
#include "deform_conv/deform_conv.hpp"

#include <algorithm>

namespace kiln::plugins_lib {
namespace {

constexpr int32_t kX = 0, kW = 1, kOffset = 2, kBias = 3, kMask = 4;

std::vector<int64_t> pair_field(const kiln_plugin_field* fields, int32_t num_fields,
                                const char* name, size_t size, int64_t fallback) {
  std::vector<int64_t> values =
      plugin::ints_field(fields, num_fields, name, std::vector<int64_t>(size, fallback));
  if (values.size() != size) {
    refuse(std::string(name) + " must have " + std::to_string(size) + " values (2-D only), got " +
           std::to_string(values.size()));
  }
  return values;
}

std::string dims_text(const kiln_plugin_tensor_desc& t) {
  std::string s = "[";
  for (int32_t d = 0; d < t.ndim; ++d) s += (d ? ", " : "") + std::to_string(t.shape[d]);
  return s + "]";
}

}  // namespace

DeformConv::DeformConv(const kiln_plugin_field* fields, int32_t num_fields) {
  dilations_ = pair_field(fields, num_fields, "dilations", 2, 1);
  strides_ = pair_field(fields, num_fields, "strides", 2, 1);
  pads_ = pair_field(fields, num_fields, "pads", 4, 0);
  kernel_shape_ = plugin::ints_field(fields, num_fields, "kernel_shape", {});
  group_ = plugin::int_field(fields, num_fields, "group", 1);
  offset_group_ = plugin::int_field(fields, num_fields, "offset_group", 1);
  if (!kernel_shape_.empty() && kernel_shape_.size() != 2) {
    refuse("kernel_shape must have 2 values (2-D only), got " +
           std::to_string(kernel_shape_.size()));
  }
  for (int64_t v : dilations_)
    if (v < 1) refuse("dilations must be >= 1");
  for (int64_t v : strides_)
    if (v < 1) refuse("strides must be >= 1");
  for (int64_t v : pads_)
    if (v < 0) refuse("pads must be >= 0");
  for (int64_t v : kernel_shape_)
    if (v < 1) refuse("kernel_shape must be >= 1");
  if (group_ < 1 || offset_group_ < 1) refuse("group and offset_group must be >= 1");
  fields_.add_ints("dilations", dilations_);
  fields_.add_int("group", group_);
  if (!kernel_shape_.empty()) fields_.add_ints("kernel_shape", kernel_shape_);
  fields_.add_int("offset_group", offset_group_);
  fields_.add_ints("pads", pads_);
  fields_.add_ints("strides", strides_);
}

void DeformConv::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs < 3 || num_inputs > 5) return;  // infer names the count
  for (int32_t i = 0; i < num_inputs; ++i) {
    // Absent optional inputs come as float32; present ones must match X.
    if (!is_float(dtypes[0]) ||
        (dtypes[i] != dtypes[0] && !(i >= kBias && dtypes[i] == KILN_FLOAT32))) {
      refuse_dtype(std::string("takes X, W, offset, B and mask of one dtype, float32 or float16; "
                               "got ") +
                   dtype_name(dtypes[0]) + " and " + dtype_name(dtypes[i]));
    }
  }
}

DeformConvParams DeformConv::params_for(const kiln_plugin_tensor_desc* inputs,
                                        int32_t num_inputs) const {
  if (num_inputs < 3 || num_inputs > 5) {
    refuse("takes 3 to 5 inputs (X, W, offset, B, mask), got " + std::to_string(num_inputs));
  }
  expect_rank(inputs, kX, "X", 4);
  expect_rank(inputs, kW, "W", 4);
  expect_rank(inputs, kOffset, "offset", 4);
  const int64_t* x = inputs[kX].shape;
  const int64_t* w = inputs[kW].shape;
  const int64_t* off = inputs[kOffset].shape;
  DeformConvParams p{};
  p.batches = x[0];
  p.in_channels = x[1];
  p.height = x[2];
  p.width = x[3];
  p.out_channels = w[0];
  p.kernel_h = kernel_shape_.empty() ? w[2] : kernel_shape_[0];
  p.kernel_w = kernel_shape_.empty() ? w[3] : kernel_shape_[1];
  p.stride_h = strides_[0];
  p.stride_w = strides_[1];
  p.pad_h = pads_[0];
  p.pad_w = pads_[1];
  p.dilation_h = dilations_[0];
  p.dilation_w = dilations_[1];
  p.group = group_;
  p.offset_group = offset_group_;
  p.has_bias = num_inputs > kBias && present(inputs[kBias]);
  p.has_mask = num_inputs > kMask && present(inputs[kMask]);
  if (!kernel_shape_.empty()) {
    expect_same_dim(w[2], kernel_shape_[0], "W's dimension 2 and kernel_shape[0]");
    expect_same_dim(w[3], kernel_shape_[1], "W's dimension 3 and kernel_shape[1]");
  }
  const auto out_size = [](int64_t in, int64_t k, int64_t stride, int64_t pad_sum, int64_t dil) {
    return in < 0 || k < 0 ? int64_t{-1} : (in + pad_sum - (dil * (k - 1) + 1)) / stride + 1;
  };
  p.out_height = out_size(p.height, p.kernel_h, p.stride_h, pads_[0] + pads_[2], p.dilation_h);
  p.out_width = out_size(p.width, p.kernel_w, p.stride_w, pads_[1] + pads_[3], p.dilation_w);
  if ((p.out_height >= 0 && p.out_height < 1) || (p.out_width >= 0 && p.out_width < 1)) {
    refuse("the kernel (with dilations) is larger than the padded input " + dims_text(inputs[kX]));
  }
  if (w[1] >= 0 && p.in_channels >= 0 && w[1] * group_ != p.in_channels) {
    refuse("X has " + std::to_string(p.in_channels) + " channels but W " + dims_text(inputs[kW]) +
           " with group " + std::to_string(group_) + " takes " + std::to_string(w[1] * group_));
  }
  if (p.out_channels >= 0 && p.out_channels % group_ != 0) {
    refuse("W's output channels (" + std::to_string(p.out_channels) +
           ") are not divisible by group " + std::to_string(group_));
  }
  if (p.in_channels >= 0 && p.in_channels % offset_group_ != 0) {
    refuse("X's channels (" + std::to_string(p.in_channels) +
           ") are not divisible by offset_group " + std::to_string(offset_group_));
  }
  const int64_t taps = p.kernel_h < 0 || p.kernel_w < 0 ? -1 : p.kernel_h * p.kernel_w;
  expect_same_dim(off[0], p.batches, "the batch sizes of offset and X");
  expect_same_dim(off[1], taps < 0 ? -1 : offset_group_ * taps * 2,
                  "offset's dimension 1 and offset_group * kH * kW * 2");
  expect_same_dim(off[2], p.out_height, "offset's dimension 2 and the output height");
  expect_same_dim(off[3], p.out_width, "offset's dimension 3 and the output width");
  if (p.has_bias) {
    expect_rank(inputs, kBias, "B", 1);
    expect_same_dim(inputs[kBias].shape[0], p.out_channels, "B's length and W's output channels");
  }
  if (p.has_mask) {
    expect_rank(inputs, kMask, "mask", 4);
    const int64_t* m = inputs[kMask].shape;
    expect_same_dim(m[0], p.batches, "the batch sizes of mask and X");
    expect_same_dim(m[1], taps < 0 ? -1 : offset_group_ * taps,
                    "mask's dimension 1 and offset_group * kH * kW");
    expect_same_dim(m[2], p.out_height, "mask's dimension 2 and the output height");
    expect_same_dim(m[3], p.out_width, "mask's dimension 3 and the output width");
  }
  return p;
}

void DeformConv::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                       kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  if (num_outputs != 1) refuse("gives 1 output, got " + std::to_string(num_outputs));
  const DeformConvParams p = params_for(inputs, num_inputs);
  outputs[0].dtype = inputs[kX].dtype;
  outputs[0].ndim = 4;
  outputs[0].dims[0] = plugin::copy_dim(kX, 0);
  outputs[0].dims[1] = plugin::copy_dim(kW, 0);
  outputs[0].dims[2] = plugin::value_dim(p.out_height);
  outputs[0].dims[3] = plugin::value_dim(p.out_width);
}

int64_t DeformConv::workspace(kiln_plugin_backend, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                              const kiln_plugin_tensor_desc*, int32_t) const {
  const DeformConvParams p = params_for(inputs, num_inputs);
  return p.in_channels * p.kernel_h * p.kernel_w * p.out_height * p.out_width *
         static_cast<int64_t>(sizeof(float));
}

void DeformConv::execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                             kiln_plugin_tensor* outputs, int32_t, void* workspace) const {
  std::vector<kiln_plugin_tensor_desc> descs(static_cast<size_t>(num_inputs));
  for (int32_t i = 0; i < num_inputs; ++i) {
    descs[i] = {inputs[i].dtype, present(inputs[i]) ? inputs[i].ndim : -1, inputs[i].shape};
  }
  const DeformConvParams p = params_for(descs.data(), num_inputs);
  const kiln_plugin_tensor& x = inputs[kX];
  const kiln_plugin_tensor& w = inputs[kW];
  const kiln_plugin_tensor& off = inputs[kOffset];
  kiln_plugin_tensor& y = outputs[0];
  const int64_t taps = p.kernel_h * p.kernel_w;
  const int64_t spatial = p.out_height * p.out_width;
  const int64_t channels_per_offset_group = p.in_channels / p.offset_group;
  const int64_t in_per_group = p.in_channels / p.group;
  const int64_t out_per_group = p.out_channels / p.group;
  float* columns = static_cast<float*>(workspace);
  std::vector<float> weights(static_cast<size_t>(plugin::numel(w)));
  for (size_t i = 0; i < weights.size(); ++i)
    weights[i] = load_float(w.data, w.dtype, static_cast<int64_t>(i));
  std::vector<float> acc(static_cast<size_t>(spatial));
  for (int64_t n = 0; n < p.batches; ++n) {
    // columns[(c * kH + i) * kW + j][oh * oW + ow]: the masked sample tap (i, j) reads for (oh,
    // ow).
    for (int64_t c = 0; c < p.in_channels; ++c) {
      const int64_t og = c / channels_per_offset_group;
      const int64_t plane_base = (n * p.in_channels + c) * p.height * p.width;
      const auto plane = [&](int64_t hh, int64_t ww) {
        return load_float(x.data, x.dtype, plane_base + hh * p.width + ww);
      };
      for (int64_t i = 0; i < p.kernel_h; ++i) {
        for (int64_t j = 0; j < p.kernel_w; ++j) {
          const int64_t tap = i * p.kernel_w + j;
          const int64_t dy_base = ((n * p.offset_group + og) * taps * 2 + 2 * tap) * spatial;
          const int64_t dx_base = dy_base + spatial;
          const int64_t mask_base = ((n * p.offset_group + og) * taps + tap) * spatial;
          float* row = columns + (c * taps + tap) * spatial;
          for (int64_t oh = 0; oh < p.out_height; ++oh) {
            for (int64_t ow = 0; ow < p.out_width; ++ow) {
              const int64_t s = oh * p.out_width + ow;
              const float h = static_cast<float>(oh * p.stride_h - p.pad_h + i * p.dilation_h) +
                              load_float(off.data, off.dtype, dy_base + s);
              const float ww = static_cast<float>(ow * p.stride_w - p.pad_w + j * p.dilation_w) +
                               load_float(off.data, off.dtype, dx_base + s);
              float v = deform_sample(plane, p.height, p.width, h, ww);
              if (p.has_mask)
                v *= load_float(inputs[kMask].data, inputs[kMask].dtype, mask_base + s);
              row[s] = v;
            }
          }
        }
      }
    }
    for (int64_t oc = 0; oc < p.out_channels; ++oc) {
      const int64_t g = oc / out_per_group;
      const float bias =
          p.has_bias ? load_float(inputs[kBias].data, inputs[kBias].dtype, oc) : 0.0f;
      std::fill(acc.begin(), acc.end(), bias);
      for (int64_t cl = 0; cl < in_per_group; ++cl) {
        const int64_t c = g * in_per_group + cl;
        for (int64_t tap = 0; tap < taps; ++tap) {
          const float weight = weights[static_cast<size_t>((oc * in_per_group + cl) * taps + tap)];
          const float* row = columns + (c * taps + tap) * spatial;
          for (int64_t s = 0; s < spatial; ++s) acc[s] += weight * row[s];
        }
      }
      const int64_t out_base = (n * p.out_channels + oc) * spatial;
      for (int64_t s = 0; s < spatial; ++s) store_float(y.data, y.dtype, out_base + s, acc[s]);
    }
  }
}

#if defined(KILN_PLUGINS_WITH_CUDA)
void DeformConv::execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                              kiln_plugin_tensor* outputs, int32_t, void*, void* stream) const {
  std::vector<kiln_plugin_tensor_desc> descs(static_cast<size_t>(num_inputs));
  for (int32_t i = 0; i < num_inputs; ++i) {
    descs[i] = {inputs[i].dtype, present(inputs[i]) ? inputs[i].ndim : -1, inputs[i].shape};
  }
  const DeformConvParams p = params_for(descs.data(), num_inputs);
  for (int32_t i = kBias; i < num_inputs; ++i) {
    if (present(inputs[i]) && inputs[i].dtype != inputs[kX].dtype) {
      refuse_dtype("the CUDA kernel takes B and mask in X's dtype");
    }
  }
  launch_deform_conv_cuda(p, inputs[kX].data, inputs[kW].data, inputs[kOffset].data,
                          p.has_bias ? inputs[kBias].data : nullptr,
                          p.has_mask ? inputs[kMask].data : nullptr, outputs[0].data,
                          inputs[kX].dtype == KILN_FLOAT16, stream);
}
#else
void DeformConv::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t,
                              void*, void*) const {
  cuda_not_implemented("DeformConv");
}
#endif

namespace {
const kiln_plugin_field_spec kSpecs[] = {
    {"dilations", KILN_PLUGIN_FIELD_INTS, 0},    {"group", KILN_PLUGIN_FIELD_INT, 0},
    {"kernel_shape", KILN_PLUGIN_FIELD_INTS, 0}, {"offset_group", KILN_PLUGIN_FIELD_INT, 0},
    {"pads", KILN_PLUGIN_FIELD_INTS, 0},         {"strides", KILN_PLUGIN_FIELD_INTS, 0}};
}  // namespace

const kiln_plugin_creator kDeformConvCreator =
    CreatorGlue<DeformConv>::make("DeformConv", 1, kSpecs, 6, false);

}  // namespace kiln::plugins_lib
