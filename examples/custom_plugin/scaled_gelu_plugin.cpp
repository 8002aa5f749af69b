// mylib::scaled_gelu v1, a kiln plugin built out of kiln's tree against its installed headers:
//   Y = alpha * X * 0.5 * (1 + erf(X / sqrt(2)))   (alpha times the exact GELU; float32, any shape)
// It runs the torch.library custom op mylib::scaled_gelu(Tensor x, float alpha) of
// scaled_gelu_op.py inside kiln engines. Written against include/kiln/plugin.h with the C++ helpers
// of plugin.hpp; only C types cross into kiln.
#include <cmath>
#include <cstdint>

#include "kiln/plugin.h"
#include "kiln/plugin.hpp"

namespace {

namespace kp = kiln::plugin;

struct ScaledGelu {
  float alpha = 1.0f;
  kiln_plugin_field field{};  // what the engine stores: alpha
};

kiln_status create(const kiln_plugin_field* fields, int32_t num_fields, void** instance,
                   kiln_plugin_error* error) {
  return kp::guard(error, [&] {
    auto* self = new ScaledGelu;
    self->alpha = kp::float_field(fields, num_fields, "alpha", 1.0f);
    if (!std::isfinite(self->alpha)) {
      delete self;
      throw kp::Failure(KILN_ERROR_INVALID_ARGUMENT, "alpha must be finite");
    }
    self->field.name = "alpha";
    self->field.kind = KILN_PLUGIN_FIELD_FLOAT;
    self->field.f = self->alpha;
    *instance = self;
  });
}

void destroy(void* instance) {
  delete static_cast<ScaledGelu*>(instance);
}

kiln_status fields(void* instance, const kiln_plugin_field** out, int32_t* count,
                   kiln_plugin_error*) {
  *out = &static_cast<ScaledGelu*>(instance)->field;
  *count = 1;
  return KILN_OK;
}

kiln_status supports(void*, const kiln_dtype* dtypes, int32_t num_inputs,
                     kiln_plugin_error* error) {
  if (num_inputs != 1 || dtypes[0] != KILN_FLOAT32)
    return kp::fail(error, KILN_ERROR_UNSUPPORTED, "takes one float32 input");
  return KILN_OK;
}

// The output has the input's dtype and shape (each dimension a copy, so dynamic ones stay so).
kiln_status infer(void*, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                  kiln_plugin_output_desc* outputs, int32_t num_outputs, kiln_plugin_error* error) {
  if (num_inputs != 1 || num_outputs != 1)
    return kp::fail(error, KILN_ERROR_INVALID_ARGUMENT, "takes 1 input and gives 1 output");
  outputs[0].dtype = inputs[0].dtype;
  outputs[0].ndim = inputs[0].ndim;
  for (int32_t d = 0; d < inputs[0].ndim; ++d) outputs[0].dims[d] = kp::copy_dim(0, d);
  return KILN_OK;
}

kiln_status execute_cpu(void* instance, const kiln_plugin_tensor* inputs, int32_t,
                        kiln_plugin_tensor* outputs, int32_t, void*, kiln_plugin_error*) {
  const float alpha = static_cast<const ScaledGelu*>(instance)->alpha;
  const auto* x = static_cast<const float*>(inputs[0].data);
  auto* y = static_cast<float*>(outputs[0].data);
  const int64_t n = kp::numel(outputs[0]);
  for (int64_t i = 0; i < n; ++i)
    y[i] = alpha * x[i] * 0.5f * (1.0f + std::erf(x[i] * 0.70710678118654752f));
  return KILN_OK;
}

const kiln_plugin_field_spec field_specs[] = {{"alpha", KILN_PLUGIN_FIELD_FLOAT, 1}};

const kiln_plugin_creator scaled_gelu = {
    KILN_PLUGIN_ABI_VERSION,
    "mylib",        // the torch op's namespace
    "scaled_gelu",  // and name: kiln.compile maps mylib::scaled_gelu to this plugin
    1,
    field_specs,
    1,
    /*data_dependent_shapes=*/0,
    create,
    destroy,
    fields,
    supports,
    infer,
    /*workspace=*/nullptr,
    execute_cpu,
    /*execute_cuda=*/nullptr,
};

}  // namespace

// kiln_load_plugin_library (dlopen) calls this.
extern "C" __attribute__((visibility("default"))) kiln_status kiln_plugin_init(uint32_t) {
  return kiln_register_plugin_creator(&scaled_gelu);
}

// LD_PRELOAD or linking the library in: register when loaded (registering twice is harmless).
__attribute__((constructor)) static void register_on_load() {
  (void)kiln_plugin_init(KILN_PLUGIN_ABI_VERSION);
}
