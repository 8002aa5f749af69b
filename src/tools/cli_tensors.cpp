#include "tools/cli_tensors.hpp"

#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <sstream>

#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "base/float8.hpp"
#include "base/half.hpp"
#include "base/sub_byte.hpp"
#include "base/host_tensor.hpp"
#include "base/memory_limit.hpp"
#include "format/engine_io.hpp"
#include "tools/cli_args.hpp"
#include "tools/npy.hpp"

namespace kiln::tools {
namespace {

bool is_integer(DType dtype) {
  return dtype == DType::kInt8 || dtype == DType::kUInt8 || dtype == DType::kInt16 ||
         dtype == DType::kUInt16 || dtype == DType::kInt32 || dtype == DType::kUInt32 ||
         dtype == DType::kInt64 || dtype == DType::kUInt64;
}

void store_from_double(DType dtype, void* data, int64_t i, double value) {
  switch (dtype) {
    case DType::kFloat32:
      static_cast<float*>(data)[i] = static_cast<float>(value);
      return;
    case DType::kFloat64:
      static_cast<double*>(data)[i] = value;
      return;
    case DType::kFloat16:
      static_cast<uint16_t*>(data)[i] = float_to_half(static_cast<float>(value));
      return;
    case DType::kBFloat16:
      static_cast<uint16_t*>(data)[i] = float_to_bfloat16(static_cast<float>(value));
      return;
    case DType::kInt64:
      static_cast<int64_t*>(data)[i] = static_cast<int64_t>(value);
      return;
    case DType::kInt32:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(value);
      return;
    case DType::kInt16:
      static_cast<int16_t*>(data)[i] = static_cast<int16_t>(value);
      return;
    case DType::kInt8:
      static_cast<int8_t*>(data)[i] = static_cast<int8_t>(value);
      return;
    case DType::kUInt8:
      static_cast<uint8_t*>(data)[i] = static_cast<uint8_t>(value);
      return;
    case DType::kUInt16:
      static_cast<uint16_t*>(data)[i] = static_cast<uint16_t>(value);
      return;
    case DType::kUInt32:
      static_cast<uint32_t*>(data)[i] = static_cast<uint32_t>(value);
      return;
    case DType::kUInt64:
      static_cast<uint64_t*>(data)[i] = static_cast<uint64_t>(value);
      return;
    case DType::kBool:
      static_cast<uint8_t*>(data)[i] = value != 0.0 ? 1 : 0;
      return;
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
      static_cast<uint8_t*>(data)[i] =
          float_to_float8(static_cast<float>(value), *float8_format(dtype), true);
      return;
    case DType::kFloat8E8M0:
      static_cast<uint8_t*>(data)[i] = float_to_float8e8m0(static_cast<float>(value), true, E8M0Rounding::kUp);
      return;
    case DType::kFloat4E2M1:
      static_cast<uint8_t*>(data)[i] = double_to_float4e2m1(value);
      return;
    case DType::kUInt4:
    case DType::kInt4:
    case DType::kUInt2:
    case DType::kInt2:
      static_cast<uint8_t*>(data)[i] = sub_byte_int_from_double(value, dtype);
      return;
  }
  fail(ErrorCode::kInternal, "unknown dtype ", static_cast<int>(dtype));
}

// Bytes of an input tensor the CLI is about to allocate, checked for overflow and against the
// host memory limit: dims come from the engine (or a .npy file) and may be absurd.
size_t input_bytes(const std::string& name, DType dtype, const Shape& shape) {
  const std::string what = "input '" + name + "'";
  const auto bytes = static_cast<uint64_t>(checked_byte_size(shape, dtype, what));
  const MemoryLimit limit = host_memory_limit();
  if (bytes > limit.bytes) {
    fail(ErrorCode::kOutOfMemory, what, ": ", dtype_name(dtype), shape_to_string(shape), " needs ",
         format_bytes(bytes), ", more than ", describe_memory_limit(limit));
  }
  return static_cast<size_t>(bytes);
}

// Element i of an integer tensor as its value modulo 2^64 (signed values sign-extended), so that
// integer conversions wrap like numpy's astype and keep uint64 values above 2^53 exact.
uint64_t read_integer_bits(DType dtype, const uint8_t* data, int64_t i) {
  switch (dtype) {
    case DType::kInt8: return static_cast<uint64_t>(reinterpret_cast<const int8_t*>(data)[i]);
    case DType::kUInt8: return data[i];
    case DType::kInt16: return static_cast<uint64_t>(reinterpret_cast<const int16_t*>(data)[i]);
    case DType::kUInt16: return reinterpret_cast<const uint16_t*>(data)[i];
    case DType::kInt32: return static_cast<uint64_t>(reinterpret_cast<const int32_t*>(data)[i]);
    case DType::kUInt32: return reinterpret_cast<const uint32_t*>(data)[i];
    case DType::kInt64: return static_cast<uint64_t>(reinterpret_cast<const int64_t*>(data)[i]);
    case DType::kUInt64: return reinterpret_cast<const uint64_t*>(data)[i];
    default: fail(ErrorCode::kInternal, "not an integer dtype: ", dtype_name(dtype));
  }
}

Tensor convert(const std::string& name, const Tensor& from, DType to) {
  Tensor out;
  out.dtype = to;
  out.shape = from.shape;
  out.bytes.resize(input_bytes(name, to, from.shape));
  const size_t to_size = dtype_size(to);
  if (is_integer(from.dtype) && is_integer(to)) {
    for (int64_t i = 0; i < from.numel(); ++i) {
      const uint64_t bits = read_integer_bits(from.dtype, from.bytes.data(), i);
      std::memcpy(out.bytes.data() + static_cast<size_t>(i) * to_size, &bits, to_size);  // little-endian: low bytes
    }
    return out;
  }
  const TensorView view{from.dtype, from.shape, const_cast<uint8_t*>(from.bytes.data())};
  for (int64_t i = 0; i < from.numel(); ++i) {
    store_from_double(to, out.bytes.data(), i, read_as_double(view, i));
  }
  return out;
}

Tensor random_tensor(const std::string& name, DType dtype, const Shape& shape, std::mt19937_64& rng) {
  Tensor out;
  out.dtype = dtype;
  out.shape = shape;
  out.bytes.resize(input_bytes(name, dtype, shape));
  std::uniform_real_distribution<double> real(-1.0, 1.0);
  std::uniform_int_distribution<int> small_int(0, 3);
  std::uniform_int_distribution<int> bit(0, 1);
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double value = is_floating(dtype) || is_float8(dtype) || dtype == DType::kFloat4E2M1 ||
                                 dtype == DType::kFloat8E8M0
                             ? real(rng)
                         : dtype == DType::kBool ? bit(rng)
                                                 : small_int(rng);
    store_from_double(dtype, out.bytes.data(), i, value);
  }
  return out;
}

// The binding's shape with each dynamic dimension at its opt value (or its min value when the
// file model has no range for it).
Shape default_shape(const LoadedEngine& loaded, size_t input_index) {
  const BindingInfo& info = loaded.engine.inputs()[input_index];
  Shape shape = info.shape;
  const format::Binding* binding = nullptr;
  for (const format::Binding& b : loaded.model.inputs) {
    if (b.name == info.name) binding = &b;
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] != kDynamicDim) continue;
    if (binding != nullptr && d < binding->ranges.size()) {
      shape[d] = binding->ranges[d].opt;
    } else if (d < info.min_shape.size() && info.min_shape[d] >= 0) {
      shape[d] = info.min_shape[d];
    } else {
      shape[d] = 1;
    }
  }
  return shape;
}

}  // namespace

LoadedEngine load_engine(const std::string& path) {
  format::EngineModel model = format::read_engine_file(path);
  return LoadedEngine{std::move(model), Engine::load_file(path)};
}

InputFile parse_input_option(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    throw UsageError("--input: expected NAME=FILE.npy, got '" + text + "'");
  }
  return InputFile{text.substr(0, eq), text.substr(eq + 1)};
}

void parse_shapes_option(const std::string& text, std::vector<InputShape>& shapes) {
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = text.find(',', start);
    const std::string item = text.substr(start, end == std::string::npos ? end : end - start);
    const size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      throw UsageError("--shapes: expected NAME:DIMS (e.g. x:4x3x224x224), got '" + item + "'");
    }
    InputShape shape{item.substr(0, colon), parse_dims(item.substr(colon + 1), "--shapes " + item)};
    for (const InputShape& existing : shapes) {
      if (existing.name == shape.name) throw UsageError("--shapes given twice for '" + shape.name + "'");
    }
    shapes.push_back(std::move(shape));
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

std::vector<OwnedInput> prepare_inputs(const LoadedEngine& loaded,
                                       const std::vector<InputFile>& files, bool random_missing,
                                       uint64_t seed, const std::vector<InputShape>& shapes) {
  const std::vector<BindingInfo>& bindings = loaded.engine.inputs();
  std::string input_names;
  for (const BindingInfo& b : bindings) input_names += (input_names.empty() ? "" : ", ") + b.name;
  for (size_t i = 0; i < files.size(); ++i) {
    bool known = false;
    for (const BindingInfo& b : bindings) known = known || b.name == files[i].name;
    if (!known) {
      fail(ErrorCode::kNotFound, "--input ", files[i].name, "=", files[i].path,
           ": the engine has no input named '", files[i].name, "' (inputs: ", input_names, ")");
    }
    for (size_t j = 0; j < i; ++j) {
      if (files[j].name == files[i].name) {
        throw UsageError("--input given twice for '" + files[i].name + "'");
      }
    }
  }

  for (const InputShape& shape : shapes) {
    bool known = false;
    for (const BindingInfo& b : bindings) known = known || b.name == shape.name;
    if (!known) {
      fail(ErrorCode::kNotFound, "--shapes ", shape.name, ":", shape_to_string(shape.shape),
           ": the engine has no input named '", shape.name, "' (inputs: ", input_names, ")");
    }
  }

  std::mt19937_64 rng(seed);
  std::vector<OwnedInput> inputs;
  std::vector<std::string> missing;
  for (size_t i = 0; i < bindings.size(); ++i) {
    const BindingInfo& binding = bindings[i];
    const InputFile* file = nullptr;
    for (const InputFile& f : files) {
      if (f.name == binding.name) file = &f;
    }
    const InputShape* given_shape = nullptr;
    for (const InputShape& shape : shapes) {
      if (shape.name == binding.name) given_shape = &shape;
    }
    if (file != nullptr) {
      Tensor tensor = read_npy(file->path);
      if (tensor.dtype == DType::kUInt16 && binding.dtype == DType::kBFloat16) {
        tensor.dtype = DType::kBFloat16;  // .npy files carry bfloat16 as its raw uint16 bits
      }
      if (tensor.dtype == DType::kUInt8 &&
          (is_float8(binding.dtype) || binding.dtype == DType::kFloat8E8M0 ||
           binding.dtype == DType::kFloat4E2M1 || binding.dtype == DType::kUInt4 ||
           binding.dtype == DType::kUInt2)) {
        tensor.dtype = binding.dtype;  // and float8/float4 as their uint8 codes, uint4/uint2 as uint8
      }
      if (tensor.dtype == DType::kInt8 && (binding.dtype == DType::kInt4 || binding.dtype == DType::kInt2)) {
        tensor.dtype = binding.dtype;  // int4/int2 as int8 values
      }
      if (tensor.dtype != binding.dtype) {
        const bool both_float = is_floating(tensor.dtype) && is_floating(binding.dtype);
        const bool both_int = is_integer(tensor.dtype) && is_integer(binding.dtype);
        if (both_float || both_int) {
          std::cerr << "note: input '" << binding.name << "': converting " << file->path << " from "
                    << dtype_name(tensor.dtype) << " to " << dtype_name(binding.dtype) << '\n';
          tensor = convert(binding.name, tensor, binding.dtype);
        }
        // Other mismatches reach the runtime, whose error names expected vs got.
      }
      if (given_shape != nullptr && given_shape->shape != tensor.shape) {
        fail(ErrorCode::kInvalidArgument, "input '", binding.name, "': --shapes gives ",
             shape_to_string(given_shape->shape), " but ", file->path, " holds ", shape_to_string(tensor.shape));
      }
      inputs.push_back(OwnedInput{binding.name, std::move(tensor)});
    } else if (random_missing) {
      const Shape shape = given_shape != nullptr ? given_shape->shape : default_shape(loaded, i);
      inputs.push_back(OwnedInput{binding.name, random_tensor(binding.name, binding.dtype, shape, rng)});
    } else {
      missing.push_back(binding.name);
    }
  }
  if (!missing.empty()) {
    std::string names;
    for (const std::string& name : missing) names += (names.empty() ? "'" : ", '") + name + "'";
    throw UsageError("no --input for " + names + "; give NAME=FILE.npy or --random");
  }
  return inputs;
}

std::vector<NamedTensor> as_named_tensors(std::vector<OwnedInput>& inputs) {
  std::vector<NamedTensor> named;
  named.reserve(inputs.size());
  for (OwnedInput& input : inputs) named.push_back(NamedTensor{input.name, input.tensor.ref()});
  return named;
}

std::string file_name_for(const std::string& tensor_name) {
  std::string out = tensor_name;
  for (char& c : out) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
    if (!keep) c = '_';
  }
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

std::string format_leading_values(const Tensor& tensor, size_t count) {
  std::ostringstream out;
  out.precision(6);
  out << '[';
  const TensorView view{tensor.dtype, tensor.shape, const_cast<uint8_t*>(tensor.bytes.data())};
  const int64_t numel = tensor.numel();
  const int64_t shown = std::min<int64_t>(numel, static_cast<int64_t>(count));
  for (int64_t i = 0; i < shown; ++i) {
    if (i > 0) out << ", ";
    if (tensor.dtype == DType::kBool) {
      out << (read_as_double(view, i) != 0.0 ? "true" : "false");
    } else {
      out << read_as_double(view, i);
    }
  }
  if (numel > shown) out << (shown > 0 ? ", ..." : "...");
  out << ']';
  return out.str();
}

}  // namespace kiln::tools
