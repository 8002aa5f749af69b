// What every plugin of libkiln_plugins.so shares: the creator glue that turns a C++ op class into
// the C functions of kiln_plugin_creator (include/kiln/plugin.h), stored fields, float16
// conversion and tensor reads. Only kiln's public headers are used: this library never sees the
// runtime's internals, it links libkiln_runtime.so for kiln_register_plugin_creator alone.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "kiln/plugin.hpp"

namespace kiln::plugins_lib {

using kiln::plugin::Failure;

// The namespace of every op in this library: ONNX nodes of domain "kiln" map to them.
inline constexpr const char* kNamespace = "kiln";

[[noreturn]] inline void refuse(const std::string& message) {
  throw Failure(KILN_ERROR_INVALID_ARGUMENT, message);
}
[[noreturn]] inline void refuse_dtype(const std::string& message) {
  throw Failure(KILN_ERROR_UNSUPPORTED, message);
}

const char* dtype_name(kiln_dtype dtype);

// IEEE binary16 <-> float32, round to nearest even. Host and device (CUDA kernels use their own
// __half; these keep the CPU code free of CUDA headers).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

// Element `i` of a float32 or float16 tensor as float; the dtype was checked by supports().
inline float load_float(const void* data, kiln_dtype dtype, int64_t i) {
  if (dtype == KILN_FLOAT16) return half_to_float(static_cast<const uint16_t*>(data)[i]);
  return static_cast<const float*>(data)[i];
}
inline void store_float(void* data, kiln_dtype dtype, int64_t i, float value) {
  if (dtype == KILN_FLOAT16) {
    static_cast<uint16_t*>(data)[i] = float_to_half(value);
  } else {
    static_cast<float*>(data)[i] = value;
  }
}
// Element `i` of an int32 or int64 tensor.
inline int64_t load_index(const void* data, kiln_dtype dtype, int64_t i) {
  if (dtype == KILN_INT32) return static_cast<const int32_t*>(data)[i];
  return static_cast<const int64_t*>(data)[i];
}

inline bool is_float(kiln_dtype d) {
  return d == KILN_FLOAT32 || d == KILN_FLOAT16;
}
inline bool is_index(kiln_dtype d) {
  return d == KILN_INT32 || d == KILN_INT64;
}

inline bool present(const kiln_plugin_tensor_desc& t) {
  return t.ndim >= 0;
}
inline bool present(const kiln_plugin_tensor& t) {
  return t.ndim >= 0 && t.data != nullptr;
}

// Product of known dimensions, or -1 when one is dynamic (-1).
int64_t known_numel(const kiln_plugin_tensor_desc& t);

// Checks that input `index` (named `name`) has rank `rank`; refuses naming both otherwise.
void expect_rank(const kiln_plugin_tensor_desc* inputs, int32_t index, const char* name,
                 int32_t rank);
// Checks that two known dimensions agree (a dynamic one, -1, agrees with anything).
void expect_same_dim(int64_t a, int64_t b, const std::string& what);

// The fields an instance stores in the engine (kiln_plugin_fields_fn). Names must be string
// literals (they outlive the instance); values are copied.
class StoredFields {
 public:
  void add_int(const char* name, int64_t value);
  void add_float(const char* name, float value);
  void add_string(const char* name, std::string value);
  void add_ints(const char* name, std::vector<int64_t> values);
  const kiln_plugin_field* data() const { return fields_.data(); }
  int32_t size() const { return static_cast<int32_t>(fields_.size()); }

 private:
  std::vector<kiln_plugin_field> fields_;
  std::deque<std::string> strings_;  // deques: growing them keeps earlier elements in place
  std::deque<std::vector<int64_t>> ints_;
};

// What every op class shares: the fields it stores in the engine (filled by its constructor) and,
// unless it says otherwise, no workspace on either backend. Op classes derive from it and are defined, bodies inline,
// in their own .cpp: only the creator (and what another op reuses) is declared in a header.
class PluginOp {
 public:
  const StoredFields& stored_fields() const { return fields_; }
  int64_t workspace(kiln_plugin_backend, const kiln_plugin_tensor_desc*, int32_t,
                    const kiln_plugin_tensor_desc*, int32_t) const {
    return 0;
  }

 protected:
  StoredFields fields_;
};

// A plugin op as a C++ class (usually a PluginOp). `Op` provides:
//   Op(const kiln_plugin_field*, int32_t)          validates fields; throws Failure
//   const StoredFields& stored_fields() const
//   void supports(const kiln_dtype*, int32_t) const  throws Failure(KILN_ERROR_UNSUPPORTED)
//   void infer(const kiln_plugin_tensor_desc*, int32_t, kiln_plugin_output_desc*, int32_t) const
//   int64_t workspace(kiln_plugin_backend, const kiln_plugin_tensor_desc*, int32_t,
//                     const kiln_plugin_tensor_desc*, int32_t) const   bytes for that backend's execute
//   void execute_cpu(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t, void*) const
//   void execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t, void*,
//                     void* stream) const
// and CreatorGlue<Op> gives the C functions, each behind kiln::plugin::guard.
template <typename Op>
struct CreatorGlue {
  static kiln_status create(const kiln_plugin_field* fields, int32_t num_fields, void** instance,
                            kiln_plugin_error* error) {
    return plugin::guard(error, [&] { *instance = new Op(fields, num_fields); });
  }
  static void destroy(void* instance) { delete static_cast<Op*>(instance); }
  static kiln_status fields(void* instance, const kiln_plugin_field** fields, int32_t* num_fields,
                            kiln_plugin_error* error) {
    return plugin::guard(error, [&] {
      const StoredFields& stored = static_cast<const Op*>(instance)->stored_fields();
      *fields = stored.data();
      *num_fields = stored.size();
    });
  }
  static kiln_status supports(void* instance, const kiln_dtype* dtypes, int32_t num_inputs,
                              kiln_plugin_error* error) {
    return plugin::guard(error,
                         [&] { static_cast<const Op*>(instance)->supports(dtypes, num_inputs); });
  }
  static kiln_status infer(void* instance, const kiln_plugin_tensor_desc* inputs,
                           int32_t num_inputs, kiln_plugin_output_desc* outputs,
                           int32_t num_outputs, kiln_plugin_error* error) {
    return plugin::guard(error, [&] {
      static_cast<const Op*>(instance)->infer(inputs, num_inputs, outputs, num_outputs);
    });
  }
  static kiln_status workspace(void* instance, kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs,
                               int32_t num_inputs, const kiln_plugin_tensor_desc* outputs,
                               int32_t num_outputs, int64_t* bytes, kiln_plugin_error* error) {
    return plugin::guard(error, [&] {
      *bytes = static_cast<const Op*>(instance)->workspace(backend, inputs, num_inputs, outputs, num_outputs);
    });
  }
  static kiln_status execute_cpu(void* instance, const kiln_plugin_tensor* inputs,
                                 int32_t num_inputs, kiln_plugin_tensor* outputs,
                                 int32_t num_outputs, void* workspace, kiln_plugin_error* error) {
    return plugin::guard(error, [&] {
      static_cast<const Op*>(instance)->execute_cpu(inputs, num_inputs, outputs, num_outputs,
                                                    workspace);
    });
  }
  static kiln_status execute_cuda(void* instance, const kiln_plugin_tensor* inputs,
                                  int32_t num_inputs, kiln_plugin_tensor* outputs,
                                  int32_t num_outputs, void* workspace, void* stream,
                                  kiln_plugin_error* error) {
    return plugin::guard(error, [&] {
      static_cast<const Op*>(instance)->execute_cuda(inputs, num_inputs, outputs, num_outputs,
                                                     workspace, stream);
    });
  }

  // A library built without CUDA declares no CUDA path, so kiln refuses its plugins in CUDA
  // builds up front (naming plugin and backend) instead of failing at the first call.
#ifdef KILN_PLUGINS_WITH_CUDA
  static constexpr bool kWithCuda = true;
#else
  static constexpr bool kWithCuda = false;
#endif

  static constexpr kiln_plugin_creator make(const char* name, int32_t version,
                                            const kiln_plugin_field_spec* specs, int32_t num_specs,
                                            bool data_dependent) {
    return kiln_plugin_creator{KILN_PLUGIN_ABI_VERSION,
                               kNamespace,
                               name,
                               version,
                               specs,
                               num_specs,
                               data_dependent ? 1 : 0,
                               &create,
                               &destroy,
                               &fields,
                               &supports,
                               &infer,
                               &workspace,
                               &execute_cpu,
                               kWithCuda ? &execute_cuda : nullptr};
  }
};

// Thrown by execute_cuda where this library has no CUDA kernel for an op (or was built without
// CUDA): kiln reports it as the plugin's UNSUPPORTED failure, naming the op.
[[noreturn]] void cuda_not_implemented(const char* op);
// cuda_not_implemented(op) in builds without CUDA; nothing in CUDA builds. For execute_cuda to
// call before it reads its arguments.
void require_cuda(const char* op);

}  // namespace kiln::plugins_lib
