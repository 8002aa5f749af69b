// The optional C++ helpers of include/kiln/plugin.hpp: exceptions become statuses and messages,
// typed field reads, dimension builders.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "kiln/plugin.hpp"

namespace {

using namespace kiln::plugin;

TEST(PluginHelpers, GuardTurnsExceptionsIntoStatusAndMessage) {
  kiln_plugin_error error{};
  EXPECT_EQ(guard(&error, [] {}), KILN_OK);
  EXPECT_EQ(guard(&error, [] { throw Failure(KILN_ERROR_UNSUPPORTED, "no int8"); }),
            KILN_ERROR_UNSUPPORTED);
  EXPECT_STREQ(error.message, "no int8");
  EXPECT_EQ(guard(&error, [] { throw std::runtime_error("bad shape"); }),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(error.message, "bad shape");
  EXPECT_EQ(guard(&error, [] { throw 42; }), KILN_ERROR_INTERNAL);
}

TEST(PluginHelpers, LongMessagesAreTruncatedAndTerminated) {
  kiln_plugin_error error{};
  const std::string longer(KILN_PLUGIN_ERROR_CAPACITY * 2, 'x');
  EXPECT_EQ(fail(&error, KILN_ERROR_INVALID_ARGUMENT, longer), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error.message).size(), size_t{KILN_PLUGIN_ERROR_CAPACITY - 1});
}

TEST(PluginHelpers, TypedFieldsWithFallbacks) {
  const int64_t sizes[] = {3, 4};
  kiln_plugin_field fields[3] = {};
  fields[0].name = "alpha";
  fields[0].kind = KILN_PLUGIN_FIELD_FLOAT;
  fields[0].f = 0.5f;
  fields[1].name = "mode";
  fields[1].kind = KILN_PLUGIN_FIELD_STRING;
  fields[1].s = "nearest";
  fields[2].name = "sizes";
  fields[2].kind = KILN_PLUGIN_FIELD_INTS;
  fields[2].ints = sizes;
  fields[2].count = 2;
  EXPECT_EQ(float_field(fields, 3, "alpha", 1.0f), 0.5f);
  EXPECT_EQ(float_field(fields, 3, "beta", 1.0f), 1.0f);
  EXPECT_EQ(string_field(fields, 3, "mode", "linear"), "nearest");
  EXPECT_EQ(ints_field(fields, 3, "sizes", {}), (std::vector<int64_t>{3, 4}));
  EXPECT_THROW(int_field(fields, 3, "alpha", 0), Failure);
  EXPECT_EQ(find_field(fields, 3, "gamma"), nullptr);
  EXPECT_EQ(copy_dim(1, 2).kind, KILN_PLUGIN_DIM_COPY);
  EXPECT_EQ(data_dependent_dim(9).value, 9);
}

}  // namespace
