// Conv shape inference on hostile dims: the channel check must not overflow.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/error.hpp"
#include "ops/op_registry.hpp"

namespace kiln {
namespace {

ops::ValueInfo float_info(Shape shape) {
  return ops::ValueInfo{DType::kFloat32, std::move(shape), nullptr, true};
}

// Infers Conv(X, W) with attribute group; returns the kiln::Error message, or "" when none.
std::string conv_error(Shape x, Shape w, int64_t group) {
  AttributeMap attrs;
  attrs.set("group", Attribute::of_int(group));
  const std::vector<ops::ValueInfo> inputs{float_info(std::move(x)), float_info(std::move(w))};
  std::vector<ops::ValueInfo> outputs(1);
  try {
    ops::infer_node(*ops::find_op("Conv"), "conv", attrs, inputs, outputs);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  return "";
}

TEST(ConvInfer, ChannelProductThatOverflowsIsAnError) {
  // W's channels x group = (2^62 + 1) x 4 wraps to 4 in 64 bits, which matched X's 4 channels
  // (and was undefined behaviour) before the check was made with overflow detection.
  const int64_t huge = (int64_t{1} << 62) + 1;
  const std::string message = conv_error({1, 4, 5, 5}, {4, huge, 3, 3}, 4);
  EXPECT_NE(message.find("node 'conv'"), std::string::npos) << message;
  EXPECT_NE(message.find("X has 4 channels"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(huge) + " x group 4"), std::string::npos) << message;
  EXPECT_NE(message.find("overflows"), std::string::npos) << message;
}

TEST(ConvInfer, ChannelMismatchNamesTheProduct) {
  const std::string message = conv_error({1, 6, 5, 5}, {4, 2, 3, 3}, 2);
  EXPECT_NE(message.find("X has 6 channels but W expects 2 x group 2 = 4"), std::string::npos)
      << message;
  EXPECT_EQ(conv_error({1, 4, 5, 5}, {4, 2, 3, 3}, 2), "");
}

}  // namespace
}  // namespace kiln
