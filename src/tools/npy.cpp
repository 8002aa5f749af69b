#include "tools/npy.hpp"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>

#include "base/error.hpp"

namespace kiln::tools {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// Real headers are a few hundred bytes; this bounds what a hostile file can make us parse.
constexpr size_t kMaxHeaderSize = size_t{1} << 20;

struct DescrEntry {
  const char* descr;
  DType dtype;
};

// The accepted descrs. '|' and '<' are interchangeable for 1-byte types and both are read.
// Reading takes the first entry of a descr, so '<u2' reads as uint16; bfloat16 is written as '<u2'
// (its raw bits) too.
constexpr DescrEntry kDescrs[] = {
    {"<f4", DType::kFloat32}, {"<f2", DType::kFloat16}, {"<f8", DType::kFloat64},
    {"|i1", DType::kInt8},    {"|u1", DType::kUInt8},   {"<i2", DType::kInt16},
    {"<u2", DType::kUInt16},  {"<i4", DType::kInt32},   {"<u4", DType::kUInt32},
    {"<i8", DType::kInt64},   {"<u8", DType::kUInt64},  {"|b1", DType::kBool},
    {"<u2", DType::kBFloat16},
    // NumPy has no float8 either: their codes are written as '|u1'.
    {"|u1", DType::kFloat8E4M3FN}, {"|u1", DType::kFloat8E4M3FNUZ},
    {"|u1", DType::kFloat8E5M2},   {"|u1", DType::kFloat8E5M2FNUZ},
    {"|u1", DType::kFloat8E8M0},   {"|u1", DType::kFloat4E2M1},
    // Nor 4- and 2-bit integers: one value per byte, as int8 or uint8 (never packed).
    {"|i1", DType::kInt4},         {"|u1", DType::kUInt4},
    {"|i1", DType::kInt2},         {"|u1", DType::kUInt2},
};

// The value of one key of the header dict.
struct HeaderValue {
  enum class Kind { kString, kBool, kTuple } kind = Kind::kString;
  std::string text;
  bool flag = false;
  std::vector<int64_t> ints;
};

// A minimal parser for the Python dict literal in a .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  std::vector<std::pair<std::string, HeaderValue>> parse_dict() {
    std::vector<std::pair<std::string, HeaderValue>> entries;
    expect('{');
    skip_space();
    while (peek() != '}') {
      std::string key = parse_string();
      expect(':');
      entries.emplace_back(std::move(key), parse_value());
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
      } else if (peek() != '}') {
        bad("expected ',' or '}'");
      }
    }
    ++pos_;
    return entries;
  }

 private:
  [[noreturn]] void bad(std::string_view what) const {
    fail(ErrorCode::kCorruptFile, source_, ": malformed .npy header (", what, " at offset ", pos_,
         "): ", text_);
  }
  char peek() const {
    if (pos_ >= text_.size()) bad("unexpected end");
    return text_[pos_];
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a string");
    ++pos_;
    std::string out;
    while (peek() != quote) out.push_back(text_[pos_++]);
    ++pos_;
    return out;
  }
  int64_t parse_int() {
    skip_space();
    int64_t value = 0;
    bool any = false;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      const int digit = text_[pos_++] - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) bad("dimension too large");
      value = value * 10 + digit;
      any = true;
    }
    // Python 2 era writers emitted "3L".
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
    if (!any) bad("expected a non-negative integer");
    return value;
  }
  HeaderValue parse_value() {
    skip_space();
    HeaderValue value;
    const char c = peek();
    if (c == '\'' || c == '"') {
      value.kind = HeaderValue::Kind::kString;
      value.text = parse_string();
    } else if (text_.substr(pos_, 4) == "True") {
      value.kind = HeaderValue::Kind::kBool;
      value.flag = true;
      pos_ += 4;
    } else if (text_.substr(pos_, 5) == "False") {
      value.kind = HeaderValue::Kind::kBool;
      pos_ += 5;
    } else if (c == '(') {
      value.kind = HeaderValue::Kind::kTuple;
      ++pos_;
      skip_space();
      while (peek() != ')') {
        value.ints.push_back(parse_int());
        skip_space();
        if (peek() == ',') {
          ++pos_;
          skip_space();
        } else if (peek() != ')') {
          bad("expected ',' or ')'");
        }
      }
      ++pos_;
    } else {
      bad("unexpected value");
    }
    return value;
  }

  std::string_view text_;
  const std::string& source_;
  size_t pos_ = 0;
};

DType dtype_from_descr(const std::string& descr, const std::string& source) {
  std::string normalised = descr;
  if (normalised.size() == 3 &&
      (normalised[0] == '<' || normalised[0] == '|' || normalised[0] == '=')) {
    // '=' is native order; kiln only runs on little-endian hosts.
    if (normalised[0] == '=') normalised[0] = '<';
    for (const DescrEntry& entry : kDescrs) {
      const std::string_view want(entry.descr);
      if (normalised.substr(1) == want.substr(1)) return entry.dtype;
    }
  }
  if (!descr.empty() && descr[0] == '>') {
    fail(ErrorCode::kUnsupported, source, ": big-endian .npy data ('", descr,
         "') is not supported; save it little-endian (arr.astype(arr.dtype.newbyteorder('<')))");
  }
  fail(ErrorCode::kUnsupported, source, ": .npy dtype '", descr,
       "' is not supported (supported: f4 f2 f8 i1 u1 i2 u2 i4 u4 i8 u8 b1)");
}

uint32_t read_le(const uint8_t* p, int bytes) {
  uint32_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

std::string shape_tuple(const Shape& shape) {
  std::ostringstream out;
  out << '(';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out << ", ";
    out << shape[i];
  }
  if (shape.size() == 1) out << ',';
  out << ')';
  return out.str();
}

}  // namespace

std::string npy_descr(DType dtype) {
  for (const DescrEntry& entry : kDescrs) {
    if (entry.dtype == dtype) return entry.descr;
  }
  fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype), " cannot be stored in a .npy file");
}

Tensor parse_npy(std::span<const uint8_t> bytes, const std::string& source) {
  if (bytes.size() < kMagicSize + 2 || std::memcmp(bytes.data(), kMagic, kMagicSize) != 0) {
    fail(ErrorCode::kCorruptFile, source, ": not a .npy file (bad magic)");
  }
  const int major = bytes[6];
  const int minor = bytes[7];
  int length_bytes = 0;
  if (major == 1) {
    length_bytes = 2;
  } else if (major == 2 || major == 3) {
    length_bytes = 4;  // 3.0 only changes the header's text encoding to UTF-8
  } else {
    fail(ErrorCode::kUnsupported, source, ": .npy format version ", major, ".", minor,
         " is not supported (1.0, 2.0 and 3.0 are)");
  }
  const size_t prefix = kMagicSize + 2 + static_cast<size_t>(length_bytes);
  if (bytes.size() < prefix) fail(ErrorCode::kCorruptFile, source, ": truncated .npy header");
  const size_t header_size = read_le(bytes.data() + kMagicSize + 2, length_bytes);
  if (header_size > kMaxHeaderSize || bytes.size() - prefix < header_size) {
    fail(ErrorCode::kCorruptFile, source, ": truncated .npy header (", header_size,
         " header bytes announced, file has ", bytes.size(), " bytes)");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes.data() + prefix), header_size);

  HeaderParser parser(header, source);
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<Shape> shape;
  for (auto& [key, value] : parser.parse_dict()) {
    if (key == "descr" && value.kind == HeaderValue::Kind::kString) {
      descr = value.text;
    } else if (key == "fortran_order" && value.kind == HeaderValue::Kind::kBool) {
      fortran_order = value.flag;
    } else if (key == "shape" && value.kind == HeaderValue::Kind::kTuple) {
      shape = value.ints;
    } else {
      fail(ErrorCode::kCorruptFile, source, ": unexpected .npy header key '", key,
           "' or value type: ", header);
    }
  }
  if (!descr || !fortran_order || !shape) {
    fail(ErrorCode::kCorruptFile, source,
         ": .npy header lacks one of 'descr', 'fortran_order', 'shape': ", header);
  }
  if (*fortran_order) {
    // Arrays with at most one non-unit dimension have the same bytes in both orders.
    int non_unit_dims = 0;
    for (int64_t d : *shape) non_unit_dims += d != 1 ? 1 : 0;
    if (non_unit_dims > 1) {
      fail(ErrorCode::kUnsupported, source,
           ": Fortran-order .npy data is not supported; save np.ascontiguousarray(arr)");
    }
  }

  Tensor tensor;
  tensor.dtype = dtype_from_descr(*descr, source);
  tensor.shape = *shape;
  const size_t element_size = dtype_size(tensor.dtype);
  const size_t available = bytes.size() - prefix - header_size;
  // Overflow-safe element count: stop as soon as it exceeds what the file could hold.
  uint64_t numel = 1;
  for (int64_t d : tensor.shape) {
    if (d == 0) {
      numel = 0;
      break;
    }
  }
  if (numel != 0) {
    for (int64_t d : tensor.shape) {
      if (numel > available / static_cast<uint64_t>(d)) {
        fail(ErrorCode::kCorruptFile, source, ": truncated .npy data: shape ",
             shape_to_string(tensor.shape), " of ", dtype_name(tensor.dtype),
             " needs more than the ", available, " data bytes in the file");
      }
      numel *= static_cast<uint64_t>(d);
    }
  }
  const uint64_t needed = numel * element_size;
  if (needed > available) {
    fail(ErrorCode::kCorruptFile, source, ": truncated .npy data: shape ",
         shape_to_string(tensor.shape), " of ", dtype_name(tensor.dtype), " needs ", needed,
         " bytes, the file has ", available);
  }
  if (needed < available) {
    fail(ErrorCode::kCorruptFile, source, ": .npy file has ", available - needed,
         " trailing bytes after the data of shape ", shape_to_string(tensor.shape));
  }
  const uint8_t* data = bytes.data() + prefix + header_size;
  tensor.bytes.assign(data, data + needed);
  if (tensor.dtype == DType::kBool) {
    for (uint8_t& b : tensor.bytes) b = b != 0 ? 1 : 0;
  }
  return tensor;
}

Tensor read_npy(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(ErrorCode::kNotFound, path, ": no such file");
  if (std::filesystem::is_directory(path, ec)) {
    fail(ErrorCode::kIoError, path, ": is a directory, not a .npy file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kIoError, path, ": cannot open for reading");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) fail(ErrorCode::kIoError, path, ": read failed");
  return parse_npy(bytes, path);
}

std::vector<uint8_t> encode_npy(DType dtype, const Shape& shape, const void* data) {
  std::string header = "{'descr': '" + npy_descr(dtype) +
                       "', 'fortran_order': False, 'shape': " + shape_tuple(shape) + ", }";
  // Pad with spaces and a final newline so that the data starts at a multiple of 64 bytes.
  const auto padded_size = [&](size_t prefix) {
    const size_t unpadded = prefix + header.size() + 1;
    return header.size() + 1 + (64 - unpadded % 64) % 64;
  };
  int major = 1;
  size_t header_size = padded_size(kMagicSize + 2 + 2);
  if (header_size > 0xffff) {
    major = 2;
    header_size = padded_size(kMagicSize + 2 + 4);
  }
  header.append(header_size - header.size() - 1, ' ');
  header.push_back('\n');

  const size_t data_size = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicSize + 2 + length_bytes;
  // Sized once and filled with memcpy: piecewise vector inserts trip GCC 12's bounds warnings.
  std::vector<uint8_t> out(prefix + header.size() + data_size);
  std::memcpy(out.data(), kMagic, kMagicSize);
  out[kMagicSize] = static_cast<uint8_t>(major);
  out[kMagicSize + 1] = 0;
  for (size_t i = 0; i < length_bytes; ++i) {
    out[kMagicSize + 2 + i] = static_cast<uint8_t>((header.size() >> (8 * i)) & 0xff);
  }
  std::memcpy(out.data() + prefix, header.data(), header.size());
  if (data_size > 0) std::memcpy(out.data() + prefix + header.size(), data, data_size);
  return out;
}

void write_npy(const std::string& path, DType dtype, const Shape& shape, const void* data) {
  const std::vector<uint8_t> bytes = encode_npy(dtype, shape, data);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(ErrorCode::kIoError, path, ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) fail(ErrorCode::kIoError, path, ": write failed");
}

}  // namespace kiln::tools
