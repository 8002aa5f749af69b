#include "common/plugin_support.hpp"

#include <bit>

namespace kiln::plugins_lib {

const char* dtype_name(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_FLOAT32:
      return "float32";
    case KILN_FLOAT16:
      return "float16";
    case KILN_FLOAT64:
      return "float64";
    case KILN_BFLOAT16:
      return "bfloat16";
    case KILN_INT8:
      return "int8";
    case KILN_INT16:
      return "int16";
    case KILN_INT32:
      return "int32";
    case KILN_INT64:
      return "int64";
    default:
      return "another dtype";
  }
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t float_to_half(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN (NaN keeps a quiet payload bit)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {                                               // subnormal or zero
    if (abs < 0x33000000u) return sign;                                  // below half the least
    const uint32_t shift = 126 - (abs >> 23);                            // 14..24: units of 2^-24
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t value = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (value & 1u))) ++value;
    return static_cast<uint16_t>(sign | value);
  }
  uint32_t value = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (value & 1u))) ++value;
  return static_cast<uint16_t>(sign | value);
}

int64_t known_numel(const kiln_plugin_tensor_desc& t) {
  int64_t n = 1;
  for (int32_t d = 0; d < t.ndim; ++d) {
    if (t.shape[d] < 0) return -1;
    n *= t.shape[d];
  }
  return n;
}

void expect_rank(const kiln_plugin_tensor_desc* inputs, int32_t index, const char* name,
                 int32_t rank) {
  if (inputs[index].ndim != rank) {
    refuse(std::string(name) + " (input " + std::to_string(index) + ") must have rank " +
           std::to_string(rank) + ", got rank " + std::to_string(inputs[index].ndim));
  }
}

void expect_same_dim(int64_t a, int64_t b, const std::string& what) {
  if (a >= 0 && b >= 0 && a != b) {
    refuse(what + " differ (" + std::to_string(a) + " vs " + std::to_string(b) + ")");
  }
}

void StoredFields::add_int(const char* name, int64_t value) {
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_INT;
  f.i = value;
  fields_.push_back(f);
}

void StoredFields::add_float(const char* name, float value) {
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_FLOAT;
  f.f = value;
  fields_.push_back(f);
}

void StoredFields::add_string(const char* name, std::string value) {
  strings_.push_back(std::move(value));
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_STRING;
  f.s = strings_.back().c_str();
  fields_.push_back(f);
}

void StoredFields::add_ints(const char* name, std::vector<int64_t> values) {
  ints_.push_back(std::move(values));
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_INTS;
  f.ints = ints_.back().data();
  f.count = static_cast<int64_t>(ints_.back().size());
  fields_.push_back(f);
}

void cuda_not_implemented(const char* op) {
  throw Failure(KILN_ERROR_UNSUPPORTED,
                std::string("kiln::") + op +
                    " is not implemented for CUDA in libkiln_plugins.so yet (CPU only)");
}

void require_cuda([[maybe_unused]] const char* op) {
#if !defined(KILN_PLUGINS_WITH_CUDA)
  cuda_not_implemented(op);
#endif
}

}  // namespace kiln::plugins_lib
