#include "frontend/onnx/tensor_decoder.hpp"

#include <bit>
#include <charconv>
#include <cstring>

#include "base/error.hpp"
#include "base/sub_byte.hpp"
#include "frontend/onnx/external_data.hpp"

namespace kiln::onnx {
namespace {

static_assert(std::endian::native == std::endian::little,
              "raw_data is little-endian and copied as is");

// Caps a tensor's byte size so that size arithmetic cannot overflow.
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 48;

std::string tensor_label(const proto::Tensor& tensor) {
  if (!tensor.name.empty()) return detail::concat("tensor '", tensor.name, "'");
  return detail::concat("tensor at ", tensor.path);
}

template <typename... Parts>
[[noreturn]] void fail_tensor(ErrorCode code, const proto::Tensor& tensor,
                              const ImportOptions& options, Parts&&... parts) {
  fail(code, options.source, ": ", tensor_label(tensor), ": ", std::forward<Parts>(parts)...);
}

// Copies `values` into `out` converted element by element to T (bit patterns for 16-bit floats).
template <typename T, typename Source>
void store_values(const std::vector<Source>& values, HostTensor& out) {
  T* dst = out.data<T>();
  for (size_t i = 0; i < values.size(); ++i) dst[i] = static_cast<T>(values[i]);
}

template <typename Source>
void check_count(const std::vector<Source>& values, int64_t numel, const char* field,
                 const proto::Tensor& tensor, const ImportOptions& options) {
  if (values.size() != static_cast<uint64_t>(numel)) {
    fail_tensor(ErrorCode::kCorruptFile, tensor, options, "holds ", values.size(), " values in ",
                field, ", expected ", numel, " for shape ", shape_to_string(tensor.dims));
  }
}

void decode_typed_fields(const proto::Tensor& tensor, const ImportOptions& options,
                         HostTensor& out) {
  const int64_t numel = out.numel();
  switch (out.dtype) {
    case DType::kFloat32:
      check_count(tensor.float_data, numel, "float_data", tensor, options);
      store_values<float>(tensor.float_data, out);
      return;
    case DType::kFloat64:
      check_count(tensor.double_data, numel, "double_data", tensor, options);
      store_values<double>(tensor.double_data, out);
      return;
    case DType::kInt64:
      check_count(tensor.int64_data, numel, "int64_data", tensor, options);
      store_values<int64_t>(tensor.int64_data, out);
      return;
    // ONNX keeps uint32 and uint64 in uint64_data.
    case DType::kUInt64:
      check_count(tensor.uint64_data, numel, "uint64_data", tensor, options);
      store_values<uint64_t>(tensor.uint64_data, out);
      return;
    case DType::kUInt32:
      check_count(tensor.uint64_data, numel, "uint64_data", tensor, options);
      store_values<uint32_t>(tensor.uint64_data, out);
      return;
    default:
      break;
  }
  if (is_sub_byte(out.dtype)) {
    // int32_data holds the packed bytes, one per int32 (as raw_data would hold them).
    const int64_t packed_count = packed_sub_byte_size(numel, out.dtype);
    check_count(tensor.int32_data, packed_count, "int32_data (packed)", tensor, options);
    std::vector<uint8_t> packed(tensor.int32_data.begin(), tensor.int32_data.end());
    unpack_sub_byte(packed.data(), numel, out.dtype, out.data<uint8_t>());
    return;
  }
  // Every narrower type travels in int32_data; 16-bit floats as their bit patterns.
  check_count(tensor.int32_data, numel, "int32_data", tensor, options);
  switch (out.dtype) {
    case DType::kInt32:
      store_values<int32_t>(tensor.int32_data, out);
      return;
    case DType::kInt16:
      store_values<int16_t>(tensor.int32_data, out);
      return;
    case DType::kInt8:
      store_values<int8_t>(tensor.int32_data, out);
      return;
    case DType::kUInt8:
      store_values<uint8_t>(tensor.int32_data, out);
      return;
    case DType::kUInt16:
      store_values<uint16_t>(tensor.int32_data, out);
      return;
    // float8 values travel as their codes, one per int32.
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
    case DType::kFloat8E8M0:
      store_values<uint8_t>(tensor.int32_data, out);
      return;
    case DType::kFloat16:
    case DType::kBFloat16:
      store_values<uint16_t>(tensor.int32_data, out);
      return;
    case DType::kBool: {
      uint8_t* dst = out.data<uint8_t>();
      for (size_t i = 0; i < tensor.int32_data.size(); ++i) dst[i] = tensor.int32_data[i] != 0;
      return;
    }
    default:
      fail_tensor(ErrorCode::kInternal, tensor, options, "no typed-field decoder for ",
                  dtype_name(out.dtype));
  }
}

std::optional<uint64_t> parse_unsigned(const std::string& text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

struct ExternalSlice {
  ExternalDataFile file;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Opens a tensor's external data file (confined to the model's folder) and checks the slice
// against its size, before anything of the tensor's size is allocated.
ExternalSlice locate_external_data(const proto::Tensor& tensor, const ImportOptions& options,
                                   uint64_t expected_bytes) {
  std::string location;
  std::optional<uint64_t> offset = 0;
  std::optional<uint64_t> length;
  for (const proto::StringStringEntry& entry : tensor.external_data) {
    if (entry.key == "location") {
      location = entry.value;
    } else if (entry.key == "offset" || entry.key == "length") {
      const std::optional<uint64_t> value = parse_unsigned(entry.value);
      if (!value) {
        fail_tensor(ErrorCode::kCorruptFile, tensor, options, "external data ", entry.key, " '",
                    entry.value, "' is not a non-negative integer");
      }
      (entry.key == "offset" ? offset : length) = value;
    }
  }
  if (options.base_dir.empty()) {
    fail(ErrorCode::kInvalidArgument, options.source, ": ", tensor_label(tensor),
         ": uses external data ('", location,
         "') but no base directory is known; import the model from its file or set "
         "ImportOptions::base_dir");
  }
  ExternalSlice slice{
      open_external_data(options.base_dir, location,
                         detail::concat(options.source, ": ", tensor_label(tensor))),
      *offset, 0};
  const uint64_t file_size = slice.file.size();
  slice.length = length.value_or(slice.offset <= file_size ? file_size - slice.offset : 0);
  if (slice.length != expected_bytes) {
    fail_tensor(ErrorCode::kCorruptFile, tensor, options, "external data length ", slice.length,
                " does not match the ", expected_bytes, " bytes its shape ",
                shape_to_string(tensor.dims), " needs");
  }
  if (slice.offset > file_size || slice.length > file_size - slice.offset) {
    fail_tensor(ErrorCode::kCorruptFile, tensor, options, "external data file '",
                slice.file.shown_path(), "' has ", file_size, " bytes, too short for offset ",
                slice.offset, " + length ", slice.length);
  }
  return slice;
}

void read_external_slice(const ExternalSlice& slice, const proto::Tensor& tensor,
                         const ImportOptions& options, HostTensor& out) {
  const uint64_t got = slice.file.read_at(slice.offset, out.bytes.data(), slice.length);
  if (got != slice.length) {
    fail_tensor(ErrorCode::kCorruptFile, tensor, options, "short read from '",
                slice.file.shown_path(), "': got ", got, " of ", slice.length, " bytes at offset ",
                slice.offset);
  }
}

}  // namespace

std::optional<DType> dtype_from_onnx(int32_t data_type) {
  // kiln's DType values equal ONNX's TensorProto.DataType numbers.
  if (!is_valid_dtype(data_type)) return std::nullopt;
  return static_cast<DType>(data_type);
}

std::string onnx_data_type_name(int32_t data_type) {
  static constexpr const char* kNames[] = {
      "UNDEFINED",      "FLOAT",      "UINT8",          "INT8",       "UINT16",    "INT16",
      "INT32",          "INT64",      "STRING",         "BOOL",       "FLOAT16",   "DOUBLE",
      "UINT32",         "UINT64",     "COMPLEX64",      "COMPLEX128", "BFLOAT16",  "FLOAT8E4M3FN",
      "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4",      "INT4",      "FLOAT4E2M1",
      "FLOAT8E8M0",     "UINT2",      "INT2",           "FLOAT6E2M3", "FLOAT6E3M2"};
  if (data_type >= 0 && static_cast<size_t>(data_type) < std::size(kNames)) {
    return kNames[data_type];
  }
  return detail::concat("data_type ", data_type);
}

std::shared_ptr<const HostTensor> decode_tensor(const proto::Tensor& tensor,
                                                const ImportOptions& options) {
  const std::optional<DType> dtype = dtype_from_onnx(tensor.data_type);
  if (!dtype) {
    fail_tensor(ErrorCode::kUnsupported, tensor, options, "data type ",
                onnx_data_type_name(tensor.data_type), " is not supported by kiln");
  }
  if (tensor.has_segment) {
    fail_tensor(ErrorCode::kUnsupported, tensor, options, "segmented tensors are not supported");
  }
  const uint64_t element_size = dtype_size(*dtype);
  uint64_t byte_count = element_size;
  for (int64_t dim : tensor.dims) {
    if (dim < 0) {
      fail_tensor(ErrorCode::kCorruptFile, tensor, options, "negative dimension in shape ",
                  shape_to_string(tensor.dims));
    }
    if (dim != 0 && byte_count > kMaxTensorBytes / static_cast<uint64_t>(dim)) {
      fail_tensor(ErrorCode::kCorruptFile, tensor, options, "shape ", shape_to_string(tensor.dims),
                  " is too large");
    }
    byte_count *= static_cast<uint64_t>(dim);
  }

  // ONNX packs the sub-byte types two or four to a byte; kiln holds one per byte (see DType).
  const bool packed = is_sub_byte(*dtype);
  const uint64_t stored_bytes =
      packed ? static_cast<uint64_t>(packed_sub_byte_size(static_cast<int64_t>(byte_count), *dtype))
             : byte_count;
  // Check the size of the data present before allocating, so hostile dims cannot force a huge
  // allocation.
  const bool external = tensor.data_location == proto::kDataLocationExternal;
  if (!external && tensor.has_raw_data && tensor.raw_data.size() != stored_bytes) {
    fail_tensor(ErrorCode::kCorruptFile, tensor, options, "raw_data has ", tensor.raw_data.size(),
                " bytes, expected ", stored_bytes, " for shape ", shape_to_string(tensor.dims),
                " of ", dtype_name(*dtype), packed ? " (packed)" : "");
  }
  if (!external && !tensor.has_raw_data) {
    const size_t typed_count = tensor.float_data.size() + tensor.int32_data.size() +
                               tensor.int64_data.size() + tensor.double_data.size() +
                               tensor.uint64_data.size();
    const uint64_t expected = packed ? stored_bytes : byte_count / element_size;
    if (typed_count != expected) {
      fail_tensor(ErrorCode::kCorruptFile, tensor, options, "has ", typed_count,
                  " typed values, expected ", expected, " for shape ", shape_to_string(tensor.dims),
                  packed ? " (packed bytes)" : "");
    }
  }
  std::optional<ExternalSlice> slice;
  if (external) slice = locate_external_data(tensor, options, stored_bytes);

  auto out = std::make_shared<HostTensor>(*dtype, Shape(tensor.dims));
  if (packed && (slice || tensor.has_raw_data)) {
    HostTensor stored(DType::kUInt8, Shape{static_cast<int64_t>(stored_bytes)});
    if (slice) {
      read_external_slice(*slice, tensor, options, stored);
    } else if (stored_bytes > 0) {
      std::memcpy(stored.bytes.data(), tensor.raw_data.data(), stored_bytes);
    }
    unpack_sub_byte(stored.bytes.data(), out->numel(), *dtype, out->bytes.data());
  } else if (slice) {
    read_external_slice(*slice, tensor, options, *out);
  } else if (tensor.has_raw_data) {
    if (byte_count > 0) std::memcpy(out->bytes.data(), tensor.raw_data.data(), byte_count);
  } else {
    decode_typed_fields(tensor, options, *out);
  }
  return out;
}

}  // namespace kiln::onnx
