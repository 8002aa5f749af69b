// kiln::TorchvisionDeformConv2d: torchvision's arguments mapped onto kiln::DeformConv.
#include "deform_conv/torchvision_deform_conv2d.hpp"

namespace kiln::plugins_lib {

class TorchvisionDeformConv2d : public PluginOp {
 public:
  TorchvisionDeformConv2d(const kiln_plugin_field* fields, int32_t num_fields);
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  static DeformConv inner_from(const kiln_plugin_field* fields, int32_t num_fields);
  // torchvision's (input, weight, offset, mask, bias) as DeformConv's (X, W, offset, B, mask).
  template <typename T>
  std::vector<T> onnx_order(const T* inputs, int32_t num_inputs, const T& absent) const;

  int64_t use_mask_ = 1;
  DeformConv inner_;
};
namespace {

constexpr const char* kIntFields[] = {"stride_h", "stride_w",      "pad_h",
                                      "pad_w",    "dilation_h",    "dilation_w",
                                      "groups",   "offset_groups", "use_mask"};
constexpr int64_t kDefaults[] = {1, 1, 0, 0, 1, 1, 1, 1, 1};

int64_t field(const kiln_plugin_field* fields, int32_t num_fields, int index) {
  return plugin::int_field(fields, num_fields, kIntFields[index], kDefaults[index]);
}

void refuse_input_count(int32_t num_inputs, int32_t num_outputs) {
  if (num_inputs != 5 || num_outputs != 1) {
    refuse("takes 5 inputs (input, weight, offset, mask, bias) and gives 1 output, got " +
           std::to_string(num_inputs) + " and " + std::to_string(num_outputs));
  }
}

}  // namespace

DeformConv TorchvisionDeformConv2d::inner_from(const kiln_plugin_field* fields,
                                               int32_t num_fields) {
  const std::vector<int64_t> strides{field(fields, num_fields, 0), field(fields, num_fields, 1)};
  const std::vector<int64_t> pads{field(fields, num_fields, 2), field(fields, num_fields, 3),
                                  field(fields, num_fields, 2), field(fields, num_fields, 3)};
  const std::vector<int64_t> dilations{field(fields, num_fields, 4), field(fields, num_fields, 5)};
  kiln_plugin_field onnx[5]{};
  const auto ints = [&](int i, const char* name, const std::vector<int64_t>& v) {
    onnx[i].name = name;
    onnx[i].kind = KILN_PLUGIN_FIELD_INTS;
    onnx[i].ints = v.data();
    onnx[i].count = static_cast<int64_t>(v.size());
  };
  ints(0, "strides", strides);
  ints(1, "pads", pads);
  ints(2, "dilations", dilations);
  onnx[3].name = "group";
  onnx[3].kind = KILN_PLUGIN_FIELD_INT;
  onnx[3].i = field(fields, num_fields, 6);
  onnx[4].name = "offset_group";
  onnx[4].kind = KILN_PLUGIN_FIELD_INT;
  onnx[4].i = field(fields, num_fields, 7);
  return DeformConv(onnx, 5);
}

TorchvisionDeformConv2d::TorchvisionDeformConv2d(const kiln_plugin_field* fields,
                                                 int32_t num_fields)
    : use_mask_(field(fields, num_fields, 8)), inner_(inner_from(fields, num_fields)) {
  if (use_mask_ != 0 && use_mask_ != 1) {
    refuse("use_mask must be 0 or 1, got " + std::to_string(use_mask_));
  }
  for (int i = 0; i < 9; ++i) fields_.add_int(kIntFields[i], field(fields, num_fields, i));
}

template <typename T>
std::vector<T> TorchvisionDeformConv2d::onnx_order(const T* inputs, int32_t,
                                                   const T& absent) const {
  return {inputs[0], inputs[1], inputs[2], inputs[4], use_mask_ ? inputs[3] : absent};
}

void TorchvisionDeformConv2d::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs != 5) return;  // infer names the count
  const kiln_dtype onnx[] = {dtypes[0], dtypes[1], dtypes[2], dtypes[4],
                             use_mask_ ? dtypes[3] : KILN_FLOAT32};
  inner_.supports(onnx, use_mask_ ? 5 : 4);
}

void TorchvisionDeformConv2d::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                                    kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  refuse_input_count(num_inputs, num_outputs);
  const std::vector<kiln_plugin_tensor_desc> onnx =
      onnx_order(inputs, num_inputs, kiln_plugin_tensor_desc{KILN_FLOAT32, -1, nullptr});
  inner_.infer(onnx.data(), 5, outputs, num_outputs);
}

int64_t TorchvisionDeformConv2d::workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs,
                                           int32_t num_inputs,
                                           const kiln_plugin_tensor_desc* outputs,
                                           int32_t num_outputs) const {
  const std::vector<kiln_plugin_tensor_desc> onnx =
      onnx_order(inputs, num_inputs, kiln_plugin_tensor_desc{KILN_FLOAT32, -1, nullptr});
  return inner_.workspace(backend, onnx.data(), 5, outputs, num_outputs);
}

void TorchvisionDeformConv2d::execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                                          kiln_plugin_tensor* outputs, int32_t num_outputs,
                                          void* workspace) const {
  const std::vector<kiln_plugin_tensor> onnx =
      onnx_order(inputs, num_inputs, kiln_plugin_tensor{KILN_FLOAT32, -1, nullptr, nullptr});
  inner_.execute_cpu(onnx.data(), 5, outputs, num_outputs, workspace);
}

void TorchvisionDeformConv2d::execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                                           kiln_plugin_tensor* outputs, int32_t num_outputs,
                                           void* workspace, void* stream) const {
  const std::vector<kiln_plugin_tensor> onnx =
      onnx_order(inputs, num_inputs, kiln_plugin_tensor{KILN_FLOAT32, -1, nullptr, nullptr});
  inner_.execute_cuda(onnx.data(), 5, outputs, num_outputs, workspace, stream);
}

namespace {
const kiln_plugin_field_spec kSpecs[] = {
    {"stride_h", KILN_PLUGIN_FIELD_INT, 0},   {"stride_w", KILN_PLUGIN_FIELD_INT, 0},
    {"pad_h", KILN_PLUGIN_FIELD_INT, 0},      {"pad_w", KILN_PLUGIN_FIELD_INT, 0},
    {"dilation_h", KILN_PLUGIN_FIELD_INT, 0}, {"dilation_w", KILN_PLUGIN_FIELD_INT, 0},
    {"groups", KILN_PLUGIN_FIELD_INT, 0},     {"offset_groups", KILN_PLUGIN_FIELD_INT, 0},
    {"use_mask", KILN_PLUGIN_FIELD_INT, 0}};
}  // namespace

const kiln_plugin_creator kTorchvisionDeformConv2dCreator =
    CreatorGlue<TorchvisionDeformConv2d>::make("TorchvisionDeformConv2d", 1, kSpecs, 9, false);

}  // namespace kiln::plugins_lib
