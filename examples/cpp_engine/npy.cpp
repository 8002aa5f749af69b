#include "npy.hpp"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace example {
namespace {

// NumPy's descr for each kiln dtype (bfloat16 as its raw bits).
std::string descr_of(kiln::DType dtype) {
  switch (dtype) {
    case kiln::DType::kFloat32:
      return "<f4";
    case kiln::DType::kUInt8:
      return "|u1";
    case kiln::DType::kInt8:
      return "|i1";
    case kiln::DType::kInt16:
      return "<i2";
    case kiln::DType::kInt32:
      return "<i4";
    case kiln::DType::kInt64:
      return "<i8";
    case kiln::DType::kBool:
      return "|b1";
    case kiln::DType::kFloat16:
      return "<f2";
    case kiln::DType::kFloat64:
      return "<f8";
    case kiln::DType::kBFloat16:
      return "<u2";
  }
  return "?";
}

std::string quoted_value(const std::string& header, const std::string& key) {
  const size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) return {};
  const size_t open = header.find('\'', header.find(':', at) + 1);
  const size_t close = header.find('\'', open + 1);
  if (open == std::string::npos || close == std::string::npos) return {};
  return header.substr(open + 1, close - open - 1);
}

}  // namespace

kiln::Tensor read_npy(const std::string& path, kiln::DType expected) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  char magic[8];
  if (!file.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    throw std::runtime_error(path + ": not a .npy file");
  }
  uint32_t header_length = 0;
  if (magic[6] == 1) {
    uint8_t b[2];
    file.read(reinterpret_cast<char*>(b), 2);
    header_length = static_cast<uint32_t>(b[0] | (b[1] << 8));
  } else {
    uint8_t b[4];
    file.read(reinterpret_cast<char*>(b), 4);
    header_length = static_cast<uint32_t>(b[0] | (b[1] << 8) | (b[2] << 16) |
                                          (static_cast<uint32_t>(b[3]) << 24));
  }
  std::string header(header_length, '\0');
  if (!file.read(header.data(), header_length))
    throw std::runtime_error(path + ": truncated header");
  if (header.find("'fortran_order': False") == std::string::npos) {
    throw std::runtime_error(path + ": only C-order arrays are supported");
  }
  const std::string descr = quoted_value(header, "descr");
  if (descr != descr_of(expected)) {
    throw std::runtime_error(path + ": dtype '" + descr + "' but the engine input is " +
                             std::string(kiln::dtype_name(expected)) + " ('" + descr_of(expected) +
                             "')");
  }
  kiln::Tensor tensor;
  tensor.dtype = expected;
  const size_t open = header.find('(', header.find("'shape'"));
  const size_t close = header.find(')', open);
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') != std::string::npos) tensor.shape.push_back(std::stoll(dim));
  }
  tensor.bytes.resize(static_cast<size_t>(tensor.numel()) * kiln::dtype_size(expected));
  if (!file.read(reinterpret_cast<char*>(tensor.bytes.data()),
                 static_cast<std::streamsize>(tensor.bytes.size()))) {
    throw std::runtime_error(path + ": truncated data");
  }
  return tensor;
}

void write_npy(const std::string& path, const kiln::Tensor& tensor) {
  std::string dims;
  for (size_t d = 0; d < tensor.shape.size(); ++d)
    dims += (d ? ", " : "") + std::to_string(tensor.shape[d]);
  if (tensor.shape.size() == 1) dims += ",";  // a Python 1-tuple
  std::string header = "{'descr': '" + descr_of(tensor.dtype) +
                       "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so that the data starts at a multiple of 64, ending the header with a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream file(path, std::ios::binary);
  const uint16_t length = static_cast<uint16_t>(header.size());
  const char preamble[10] = {'\x93',
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             static_cast<char>(length & 0xff),
                             static_cast<char>(length >> 8)};
  file.write(preamble, 10);
  file.write(header.data(), static_cast<std::streamsize>(header.size()));
  file.write(reinterpret_cast<const char*>(tensor.bytes.data()),
             static_cast<std::streamsize>(tensor.bytes.size()));
  if (!file.flush()) throw std::runtime_error("cannot write " + path);
}

}  // namespace example
