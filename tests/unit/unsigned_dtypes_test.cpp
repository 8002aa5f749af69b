// uint16/uint32/uint64 (ONNX UINT16=4, UINT32=12, UINT64=13): their DType basics, host tensor
// helpers and the CPU kernels' unsigned semantics (wrap-around, values above INT64_MAX, shifts by
// the width or more, casts), checked against values worked out with numpy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/host_tensor.hpp"
#include "kiln/kiln.h"
#include "kiln/types.hpp"

namespace kiln {
namespace {

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

template <typename T>
HostTensor typed(DType dtype, const std::vector<T>& values) {
  HostTensor t(dtype, Shape{static_cast<int64_t>(values.size())});
  EXPECT_EQ(dtype_size(dtype), sizeof(T));
  std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(T));
  return t;
}

HostTensor u64(const std::vector<uint64_t>& values) { return typed(DType::kUInt64, values); }

template <typename T>
std::vector<T> values(const HostTensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  EXPECT_EQ(t.bytes.size(), out.size() * sizeof(T));
  std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

AttributeMap attrs_of(std::initializer_list<std::pair<std::string, Attribute>> items) {
  AttributeMap map;
  for (const auto& [name, value] : items) map.set(name, value);
  return map;
}

HostTensor run1(const std::string& op, const AttributeMap& attrs, std::vector<const HostTensor*> inputs) {
  return cpu::run_node_on_cpu("node_" + op, op, attrs, inputs, 1).at(0);
}

TEST(UnsignedDtypes, ValuesSizesAndNamesFollowOnnx) {
  EXPECT_EQ(static_cast<int>(DType::kUInt16), 4);
  EXPECT_EQ(static_cast<int>(DType::kUInt32), 12);
  EXPECT_EQ(static_cast<int>(DType::kUInt64), 13);
  // The C API's enumerators carry the same numbers.
  EXPECT_EQ(static_cast<int>(KILN_UINT16), 4);
  EXPECT_EQ(static_cast<int>(KILN_UINT32), 12);
  EXPECT_EQ(static_cast<int>(KILN_UINT64), 13);
  EXPECT_EQ(dtype_size(DType::kUInt16), 2u);
  EXPECT_EQ(dtype_size(DType::kUInt32), 4u);
  EXPECT_EQ(dtype_size(DType::kUInt64), 8u);
  EXPECT_EQ(dtype_name(DType::kUInt16), "uint16");
  EXPECT_EQ(dtype_name(DType::kUInt32), "uint32");
  EXPECT_EQ(dtype_name(DType::kUInt64), "uint64");
  EXPECT_FALSE(is_floating(DType::kUInt64));
  // Exactly kiln's enumerators are valid: the ONNX numbers of string, complex and the small
  // float types (float6) stay invalid (an engine file holding them is refused).
  const std::vector<int> valid = {1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20,
                                  21, 22, 23, 24, 25, 26};
  for (int raw = -1; raw < 40; ++raw) {
    const bool want = std::find(valid.begin(), valid.end(), raw) != valid.end();
    EXPECT_EQ(is_valid_dtype(raw), want) << raw;
    if (!want) {
      EXPECT_THROW(dtype_size(static_cast<DType>(static_cast<uint8_t>(raw))), Error) << raw;
    }
  }
}

TEST(UnsignedDtypes, HostTensorHelpersReadAndWriteThem) {
  const HostTensor a = typed<uint16_t>(DType::kUInt16, {65535, 1});
  const HostTensor b = typed<uint32_t>(DType::kUInt32, {4294967295u});
  const HostTensor c = u64({uint64_t{1} << 63});
  EXPECT_EQ(read_as_double(view_of(a), 0), 65535.0);
  EXPECT_EQ(read_as_double(view_of(b), 0), 4294967295.0);
  EXPECT_EQ(read_as_double(view_of(c), 0), 9223372036854775808.0);
  const std::vector<uint8_t> bytes = scalar_bytes(DType::kUInt32, 4000000000.0);
  ASSERT_EQ(bytes.size(), 4u);
  uint32_t word = 0;
  std::memcpy(&word, bytes.data(), 4);
  EXPECT_EQ(word, 4000000000u);
}

TEST(UnsignedDtypes, ArithmeticWrapsModuloTwoToTheBits) {
  const HostTensor a = u64({kMax64, 0, uint64_t{1} << 63, 10});
  const HostTensor b = u64({1, 1, 2, 3});
  EXPECT_EQ(values<uint64_t>(run1("Add", {}, {&a, &b})), (std::vector<uint64_t>{0, 1, (uint64_t{1} << 63) + 2, 13}));
  EXPECT_EQ(values<uint64_t>(run1("Sub", {}, {&a, &b})),
            (std::vector<uint64_t>{kMax64 - 1, kMax64, (uint64_t{1} << 63) - 2, 7}));
  EXPECT_EQ(values<uint64_t>(run1("Mul", {}, {&a, &b})), (std::vector<uint64_t>{kMax64, 0, 0, 30}));
  // Division truncates; no sign rules apply (Python's and C's mod agree on unsigned values).
  EXPECT_EQ(values<uint64_t>(run1("Div", {}, {&a, &b})),
            (std::vector<uint64_t>{kMax64, 0, uint64_t{1} << 62, 3}));
  for (int64_t fmod : {0, 1}) {
    EXPECT_EQ(values<uint64_t>(run1("Mod", attrs_of({{"fmod", Attribute::of_int(fmod)}}), {&a, &b})),
              (std::vector<uint64_t>{0, 0, 0, 1}))
        << "fmod " << fmod;
  }
  const HostTensor s = typed<uint16_t>(DType::kUInt16, {65535, 3});
  const HostTensor t = typed<uint16_t>(DType::kUInt16, {2, 5});
  EXPECT_EQ(values<uint16_t>(run1("Add", {}, {&s, &t})), (std::vector<uint16_t>{1, 8}));
  EXPECT_EQ(values<uint16_t>(run1("Sub", {}, {&t, &s})), (std::vector<uint16_t>{3, 2}));
  EXPECT_EQ(values<uint16_t>(run1("Mul", {}, {&s, &s})), (std::vector<uint16_t>{1, 9}));
}

TEST(UnsignedDtypes, IntegerDivisionByZeroIsAnError) {
  const HostTensor a = typed<uint32_t>(DType::kUInt32, {5});
  const HostTensor zero = typed<uint32_t>(DType::kUInt32, {0});
  for (const char* op : {"Div", "Mod"}) {
    try {
      run1(op, {}, {&a, &zero});
      ADD_FAILURE() << op << " by zero ran";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  }
}

TEST(UnsignedDtypes, ComparisonsAndMinMaxOrderValuesAboveInt64Max) {
  const HostTensor a = u64({uint64_t{1} << 63, 5, kMax64});
  const HostTensor b = u64({1, 5, 0});
  EXPECT_EQ(values<uint8_t>(run1("Greater", {}, {&a, &b})), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(values<uint8_t>(run1("LessOrEqual", {}, {&a, &b})), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(values<uint8_t>(run1("Equal", {}, {&a, &b})), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(values<uint64_t>(run1("Max", {}, {&a, &b})), (std::vector<uint64_t>{uint64_t{1} << 63, 5, kMax64}));
  EXPECT_EQ(values<uint64_t>(run1("Min", {}, {&a, &b})), (std::vector<uint64_t>{1, 5, 0}));
}

TEST(UnsignedDtypes, BitShiftsByTheWidthOrMoreGiveZero) {
  const HostTensor x = u64({kMax64, 1, kMax64, 16});
  const HostTensor by = u64({64, 63, kMax64, 2});
  EXPECT_EQ(values<uint64_t>(run1("BitShift", attrs_of({{"direction", Attribute::of_string("LEFT")}}), {&x, &by})),
            (std::vector<uint64_t>{0, uint64_t{1} << 63, 0, 64}));
  // Unsigned right shifts are logical: the top bit does not spread.
  EXPECT_EQ(values<uint64_t>(run1("BitShift", attrs_of({{"direction", Attribute::of_string("RIGHT")}}), {&x, &by})),
            (std::vector<uint64_t>{0, 0, 0, 4}));
  const HostTensor h = typed<uint16_t>(DType::kUInt16, {0x8001, 0x8001});
  const HostTensor hb = typed<uint16_t>(DType::kUInt16, {1, 16});
  EXPECT_EQ(values<uint16_t>(run1("BitShift", attrs_of({{"direction", Attribute::of_string("LEFT")}}), {&h, &hb})),
            (std::vector<uint16_t>{0x0002, 0}));
  EXPECT_EQ(values<uint64_t>(run1("BitwiseNot", {}, {&by})), (std::vector<uint64_t>{kMax64 - 64, kMax64 - 63, 0, kMax64 - 2}));
}

TEST(UnsignedDtypes, CastsWrapBetweenIntegersAndSaturateFromFloats) {
  const AttributeMap to_i64 = attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(DType::kInt64))}});
  const AttributeMap to_u64 = attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(DType::kUInt64))}});
  const AttributeMap to_u16 = attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(DType::kUInt16))}});
  const AttributeMap to_f64 = attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(DType::kFloat64))}});
  const HostTensor big = u64({kMax64, uint64_t{1} << 63, 70000});
  EXPECT_EQ(values<int64_t>(run1("Cast", to_i64, {&big})),
            (std::vector<int64_t>{-1, std::numeric_limits<int64_t>::min(), 70000}));
  EXPECT_EQ(values<uint16_t>(run1("Cast", to_u16, {&big})), (std::vector<uint16_t>{65535, 0, 70000 - 65536}));
  EXPECT_EQ(values<double>(run1("Cast", to_f64, {&big})),
            (std::vector<double>{18446744073709551616.0, 9223372036854775808.0, 70000.0}));
  const HostTensor negative = typed<int64_t>(DType::kInt64, {-1, 3});
  EXPECT_EQ(values<uint64_t>(run1("Cast", to_u64, {&negative})), (std::vector<uint64_t>{kMax64, 3}));
  // Float values outside the range saturate and NaN becomes 0 (ONNX leaves them undefined).
  const HostTensor floats = typed<double>(DType::kFloat64, {-5.0, 1e30, 12.9, std::nan("")});
  EXPECT_EQ(values<uint64_t>(run1("Cast", to_u64, {&floats})), (std::vector<uint64_t>{0, kMax64, 12, 0}));
}

TEST(UnsignedDtypes, SignedOnlyOpsRefuseThemAndAbsSignKeepThem) {
  const HostTensor x = typed<uint32_t>(DType::kUInt32, {0, 7});
  EXPECT_EQ(values<uint32_t>(run1("Abs", {}, {&x})), (std::vector<uint32_t>{0, 7}));
  EXPECT_EQ(values<uint32_t>(run1("Sign", {}, {&x})), (std::vector<uint32_t>{0, 1}));
  try {
    run1("Neg", {}, {&x});
    ADD_FAILURE() << "Neg of uint32 ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("uint32"), std::string::npos) << e.what();
  }
}

TEST(UnsignedDtypes, TopKAndArgMaxRankValuesAboveInt64Max) {
  const HostTensor x = u64({3, kMax64, uint64_t{1} << 63, 0});
  const HostTensor k = typed<int64_t>(DType::kInt64, {2});
  const std::vector<const HostTensor*> inputs = {&x, &k};
  const std::vector<HostTensor> top = cpu::run_node_on_cpu("topk", "TopK", {}, inputs, 2);
  EXPECT_EQ(values<uint64_t>(top.at(0)), (std::vector<uint64_t>{kMax64, uint64_t{1} << 63}));
  EXPECT_EQ(values<int64_t>(top.at(1)), (std::vector<int64_t>{1, 2}));
  const HostTensor arg = run1("ArgMin", attrs_of({{"keepdims", Attribute::of_int(0)}}), {&x});
  EXPECT_EQ(values<int64_t>(arg), (std::vector<int64_t>{3}));
}

}  // namespace
}  // namespace kiln
