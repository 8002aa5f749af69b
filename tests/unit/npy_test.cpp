// Tests of the CLI's .npy reader/writer (src/tools/npy.*).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "base/half.hpp"
// The CLI's sources are not part of a library, so the one under test is compiled in here.
#include "tools/npy.cpp"  // NOLINT(build/include)

namespace kiln::tools {
namespace {

std::vector<uint8_t> to_bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

// A .npy v1.0 file as NumPy 2.x writes np.array([[1.5, -2, 3.25], [0, 1, 2]], np.float32).
std::vector<uint8_t> numpy_written_float32_2x3() {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  header.append(0x76 - header.size() - 1, ' ');
  header.push_back('\n');
  std::string file = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header;
  const float values[] = {1.5f, -2.0f, 3.25f, 0.0f, 1.0f, 2.0f};
  file.append(reinterpret_cast<const char*>(values), sizeof(values));
  return to_bytes(file);
}

std::vector<uint8_t> with_header(const std::string& dict, const std::string& data, char major = 1) {
  std::string file = std::string("\x93NUMPY", 6);
  file.push_back(major);
  file.push_back(0);
  const size_t length_bytes = major == 1 ? 2 : 4;
  for (size_t i = 0; i < length_bytes; ++i)
    file.push_back(static_cast<char>((dict.size() >> (8 * i)) & 0xff));
  return to_bytes(file + dict + data);
}

ErrorCode error_code_of(const std::vector<uint8_t>& bytes, std::string* message) {
  try {
    parse_npy(bytes, "sample.npy");
  } catch (const Error& e) {
    *message = e.what();
    return e.code();
  }
  return ErrorCode::kOk;
}

TEST(NpyParse, ReadsNumpyWrittenFloat32) {
  const Tensor t = parse_npy(numpy_written_float32_2x3(), "a.npy");
  EXPECT_EQ(t.dtype, DType::kFloat32);
  EXPECT_EQ(t.shape, (Shape{2, 3}));
  ASSERT_EQ(t.bytes.size(), 24u);
  EXPECT_EQ(t.data<float>()[0], 1.5f);
  EXPECT_EQ(t.data<float>()[1], -2.0f);
  EXPECT_EQ(t.data<float>()[2], 3.25f);
  EXPECT_EQ(t.data<float>()[5], 2.0f);
}

TEST(NpyEncode, MatchesNumpyBytesExactly) {
  const float values[] = {1.5f, -2.0f, 3.25f, 0.0f, 1.0f, 2.0f};
  EXPECT_EQ(encode_npy(DType::kFloat32, {2, 3}, values), numpy_written_float32_2x3());
}

TEST(NpyEncode, DataStartsAtMultipleOf64AndHeaderEndsWithNewline) {
  const std::vector<int64_t> data(13 * 7, 42);
  for (const Shape& shape : {Shape{}, Shape{7}, Shape{1, 13, 7}, Shape{123456789, 0, 3}}) {
    const std::vector<uint8_t> bytes = encode_npy(DType::kInt64, shape, data.data());
    const size_t header_size = bytes[8] | (bytes[9] << 8);
    EXPECT_EQ((10 + header_size) % 64, 0u) << shape_to_string(shape);
    EXPECT_EQ(bytes[10 + header_size - 1], '\n');
  }
}

TEST(NpyEncode, TupleSyntaxForScalarAndOneDim) {
  const int32_t one = 5;
  const std::vector<uint8_t> scalar = encode_npy(DType::kInt32, {}, &one);
  EXPECT_NE(std::string(scalar.begin(), scalar.end()).find("'shape': ()"), std::string::npos);
  const int32_t three[] = {1, 2, 3};
  const std::vector<uint8_t> vec = encode_npy(DType::kInt32, {3}, three);
  EXPECT_NE(std::string(vec.begin(), vec.end()).find("'shape': (3,)"), std::string::npos);
}

TEST(NpyRoundTrip, EveryDtype) {
  const DType dtypes[] = {DType::kFloat32, DType::kFloat16, DType::kFloat64, DType::kInt8,
                          DType::kUInt8,   DType::kInt16,   DType::kUInt16,  DType::kInt32,
                          DType::kUInt32,  DType::kInt64,   DType::kUInt64,  DType::kBool};
  for (DType dtype : dtypes) {
    const Shape shape{2, 1, 3};
    std::vector<uint8_t> data(6 * dtype_size(dtype));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 37 + 11);
    if (dtype == DType::kBool) {
      for (size_t i = 0; i < data.size(); ++i) data[i] = i % 2;
    }
    const Tensor t = parse_npy(encode_npy(dtype, shape, data.data()), "rt.npy");
    EXPECT_EQ(t.dtype, dtype) << dtype_name(dtype);
    EXPECT_EQ(t.shape, shape) << dtype_name(dtype);
    EXPECT_EQ(t.bytes, data) << dtype_name(dtype);
  }
}

TEST(NpyRoundTrip, BFloat16IsStoredAsRawU2) {
  const uint16_t bits[] = {float_to_bfloat16(1.0f), float_to_bfloat16(-3.5f)};
  const std::vector<uint8_t> bytes = encode_npy(DType::kBFloat16, {2}, bits);
  EXPECT_NE(std::string(bytes.begin(), bytes.end()).find("'<u2'"), std::string::npos);
  const Tensor t = parse_npy(bytes, "bf16.npy");
  // '<u2' reads back as uint16 (the raw bits); the CLI takes them as a bfloat16 input's bits.
  EXPECT_EQ(t.dtype, DType::kUInt16);
  EXPECT_EQ(bfloat16_to_float(t.data<uint16_t>()[1]), -3.5f);
}

TEST(NpyRoundTrip, UnsignedDescrsAndValuesAboveInt64) {
  const uint64_t values[] = {18446744073709551615u, uint64_t{1} << 63, 0};
  const std::vector<uint8_t> bytes = encode_npy(DType::kUInt64, {3}, values);
  EXPECT_NE(std::string(bytes.begin(), bytes.end()).find("'<u8'"), std::string::npos);
  const Tensor t = parse_npy(bytes, "u64.npy");
  ASSERT_EQ(t.dtype, DType::kUInt64);
  EXPECT_EQ(t.data<uint64_t>()[0], 18446744073709551615u);
  EXPECT_EQ(t.data<uint64_t>()[1], uint64_t{1} << 63);
  const uint32_t words[] = {4294967295u};
  const std::vector<uint8_t> u4 = encode_npy(DType::kUInt32, {1}, words);
  EXPECT_NE(std::string(u4.begin(), u4.end()).find("'<u4'"), std::string::npos);
  EXPECT_EQ(parse_npy(u4, "u32.npy").dtype, DType::kUInt32);
}

TEST(NpyRoundTrip, FileOnDisk) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("kiln_npy_test_" + std::to_string(::getpid()) + ".npy");
  const int64_t values[] = {-1, 0, 1LL << 40, 7};
  write_npy(path.string(), DType::kInt64, {4}, values);
  const Tensor t = read_npy(path.string());
  std::filesystem::remove(path);
  ASSERT_EQ(t.shape, Shape{4});
  EXPECT_EQ(t.data<int64_t>()[2], 1LL << 40);
}

TEST(NpyParse, AcceptsVersion2HeaderAndSpacingVariants) {
  const float v = 4.0f;
  const std::string data(reinterpret_cast<const char*>(&v), 4);
  const Tensor t = parse_npy(
      with_header("{\"shape\":(1,1),\"fortran_order\":False,\"descr\":\"<f4\"}\n", data, 2),
      "v2.npy");
  EXPECT_EQ(t.shape, (Shape{1, 1}));
  EXPECT_EQ(t.data<float>()[0], 4.0f);
}

TEST(NpyParse, NormalisesBoolBytes) {
  const Tensor t =
      parse_npy(with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }\n",
                            std::string("\x00\x05", 2)),
                "b.npy");
  EXPECT_EQ(t.bytes, (std::vector<uint8_t>{0, 1}));
}

TEST(NpyParseErrors, BadMagicNamesTheFile) {
  std::string message;
  EXPECT_EQ(error_code_of(to_bytes("PK\x03\x04 not numpy at all"), &message),
            ErrorCode::kCorruptFile);
  EXPECT_NE(message.find("sample.npy"), std::string::npos) << message;
}

TEST(NpyParseErrors, TruncatedDataAndHeader) {
  std::vector<uint8_t> bytes = numpy_written_float32_2x3();
  bytes.resize(bytes.size() - 1);
  std::string message;
  EXPECT_EQ(error_code_of(bytes, &message), ErrorCode::kCorruptFile);
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_NE(message.find("sample.npy"), std::string::npos) << message;

  bytes.resize(40);  // inside the header
  EXPECT_EQ(error_code_of(bytes, &message), ErrorCode::kCorruptFile);
}

TEST(NpyParseErrors, TrailingBytes) {
  std::vector<uint8_t> bytes = numpy_written_float32_2x3();
  bytes.push_back(0);
  std::string message;
  EXPECT_EQ(error_code_of(bytes, &message), ErrorCode::kCorruptFile);
}

TEST(NpyParseErrors, HugeShapeDoesNotOverflow) {
  std::string message;
  EXPECT_EQ(error_code_of(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                      "(9223372036854775807, 9223372036854775807), }\n",
                                      "abcd"),
                          &message),
            ErrorCode::kCorruptFile);
  EXPECT_EQ(error_code_of(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                      "(99999999999999999999999,), }\n",
                                      "abcd"),
                          &message),
            ErrorCode::kCorruptFile);
}

TEST(NpyParseErrors, UnsupportedLayoutsAndDtypes) {
  std::string message;
  const std::string eight_bytes(8, '\0');
  EXPECT_EQ(error_code_of(with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n",
                                      eight_bytes),
                          &message),
            ErrorCode::kUnsupported);
  EXPECT_NE(message.find("big-endian"), std::string::npos) << message;
  EXPECT_EQ(
      error_code_of(with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1, 1), }\n",
                                eight_bytes),
                    &message),
      ErrorCode::kOk);  // one non-unit dim: same bytes in either order
  EXPECT_EQ(
      error_code_of(
          with_header("{'descr': '<i2', 'fortran_order': True, 'shape': (2, 2), }\n", eight_bytes),
          &message),
      ErrorCode::kUnsupported);
  EXPECT_NE(message.find("Fortran"), std::string::npos) << message;
  EXPECT_EQ(error_code_of(with_header("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n",
                                      eight_bytes),
                          &message),
            ErrorCode::kUnsupported);
  EXPECT_NE(message.find("<c8"), std::string::npos) << message;
}

TEST(NpyParseErrors, MalformedHeaders) {
  std::string message;
  const std::string four(4, '\0');
  for (const std::string& dict :
       {std::string("{'descr': '<f4', 'shape': (1,), }\n"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)\n"),
        std::string("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }\n"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}\n"),
        std::string("{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }\n")}) {
    EXPECT_EQ(error_code_of(with_header(dict, four), &message), ErrorCode::kCorruptFile) << dict;
    EXPECT_NE(message.find("sample.npy"), std::string::npos) << message;
  }
}

TEST(NpyFileErrors, MissingFileNamesThePath) {
  try {
    read_npy("/nonexistent/dir/input.npy");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/input.npy"), std::string::npos);
  }
}

TEST(NpyEncodeErrors, UnwritablePath) {
  const float v = 1.0f;
  try {
    write_npy("/nonexistent/dir/out.npy", DType::kFloat32, {1}, &v);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIoError);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/out.npy"), std::string::npos);
  }
}

}  // namespace
}  // namespace kiln::tools
