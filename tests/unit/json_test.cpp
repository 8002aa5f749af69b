#include "base/json.hpp"

#include <gtest/gtest.h>

#include <string>

#include "base/error.hpp"

namespace kiln::json {
namespace {

// Parses `text` expecting failure; returns the message.
std::string parse_error(std::string_view text, const ParseOptions& options = {}) {
  try {
    parse(text, options);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "parsing succeeded: " << text;
  return "";
}

TEST(JsonParse, ScalarsAndContainers) {
  const Value v = parse(R"( {"a": 1, "b": [true, false, null], "c": -2.5e3, "d": "x", "e": {}} )");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.as_object().size(), 5u);
  EXPECT_EQ(v.find("a")->as_int64(), 1);
  EXPECT_TRUE(v.find("a")->is_integer());
  const Array& b = v.find("b")->as_array();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_TRUE(b[0].as_bool());
  EXPECT_FALSE(b[1].as_bool());
  EXPECT_TRUE(b[2].is_null());
  EXPECT_DOUBLE_EQ(v.find("c")->as_number(), -2500.0);
  EXPECT_FALSE(v.find("c")->is_integer());
  EXPECT_EQ(v.find("d")->as_string(), "x");
  EXPECT_TRUE(v.find("e")->as_object().empty());
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(JsonParse, KeepsMemberOrder) {
  const Value v = parse(R"({"z": 1, "a": 2, "m": 3})");
  const Object& o = v.as_object();
  EXPECT_EQ(o[0].first, "z");
  EXPECT_EQ(o[1].first, "a");
  EXPECT_EQ(o[2].first, "m");
}

TEST(JsonParse, StringEscapes) {
  const Value v = parse(R"("q\" b\\ s\/ \b\f\n\r\t")");
  EXPECT_EQ(v.as_string(), "q\" b\\ s/ \b\f\n\r\t");
  EXPECT_EQ(parse(R"("\u0041\u00e9\u20AC")").as_string(), "A\xC3\xA9\xE2\x82\xAC");
  // A surrogate pair encodes U+1F600.
  EXPECT_EQ(parse(R"("\ud83d\ude00")").as_string(), "\xF0\x9F\x98\x80");
  // Raw UTF-8 passes through.
  EXPECT_EQ(parse("\"caf\xC3\xA9\"").as_string(), "caf\xC3\xA9");
}

TEST(JsonParse, LargeIntegersStayExactOrBecomeDoubles) {
  EXPECT_EQ(parse("9223372036854775807").as_int64(), INT64_MAX);
  EXPECT_EQ(parse("-9223372036854775808").as_int64(), INT64_MIN);
  const Value big = parse("18446744073709551616");
  EXPECT_FALSE(big.is_integer());
  EXPECT_DOUBLE_EQ(big.as_number(), 18446744073709551616.0);
  EXPECT_THROW(big.as_int64(), Error);
}

TEST(JsonParse, RejectsNonStrictInput) {
  for (const std::string_view bad : std::initializer_list<std::string_view>{"",
                          "   ",
                          "{",
                          "[1,]",
                          "{\"a\":1,}",
                          "{'a':1}",
                          "[01]",
                          "[1.]",
                          "[.5]",
                          "[1e]",
                          "[-]",
                          "NaN",
                          "Infinity",
                          "tru",
                          "nulls",
                          "{\"a\" 1}",
                          "{1:2}",
                          "\"a\tb\"",
                          "\"\\x\"",
                          "\"\\u12\"",
                          "\"\\ud800\"",
                          "\"\\udc00\"",
                          "\"abc",
                          "[1] [2]",
                          "// c\n1",
                          "\"\xC3\"",
                          "\"\xC0\xAF\"",
                          "1e999",
                          "[\"\xED\xA0\x80\"]",
                          "+1",
                          std::string_view("{}\0{", 4),
                          std::string_view("[1,\0 2]", 7)}) {
    SCOPED_TRACE(bad);
    parse_error(bad);
  }
}

TEST(JsonParse, RejectsDuplicateKeys) {
  const std::string message = parse_error(R"({"a": 1, "a": 2})");
  EXPECT_NE(message.find("duplicate key \"a\""), std::string::npos) << message;
}

TEST(JsonParse, DuplicateKeysAndDepthNameThePlace) {
  EXPECT_NE(parse_error(R"({"a": {"b": [1, {"c": 1, "c": 2}]}})").find("duplicate key \"c\" in the object at $.a.b[1]"),
            std::string::npos);
  ParseOptions options;
  options.max_depth = 2;
  EXPECT_NE(parse_error(R"({"k": [0, [1]]})", options).find("deeper than 2 at $.k[1]"), std::string::npos);
}

TEST(JsonParse, ErrorsQuoteTheInputAsPrintableAscii) {
  const std::string message = parse_error("[\"\xC3\x01\"]");
  for (const char c : message) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(static_cast<unsigned char>(c)) << " in " << message;
  }
  EXPECT_NE(message.find("\\xc3"), std::string::npos) << message;
}

TEST(JsonParse, ErrorsNameLineAndColumn) {
  ParseOptions options;
  options.source = "config";
  const std::string message = parse_error("{\n  \"a\": 1,\n  \"b\": ?\n}", options);
  EXPECT_NE(message.find("config: line 3, column 8"), std::string::npos) << message;
}

TEST(JsonParse, EnforcesDepthLimit) {
  ParseOptions options;
  options.max_depth = 4;
  EXPECT_NO_THROW(parse("[[[[1]]]]", options));
  const std::string message = parse_error("[[[[[1]]]]]", options);
  EXPECT_NE(message.find("deeper than 4"), std::string::npos) << message;
  // The default limit keeps hostile input from exhausting the stack.
  EXPECT_THROW(parse(std::string(100000, '['), {}), Error);
}

TEST(JsonSerialize, RoundTrips) {
  const std::string text =
      R"({"name":"kiln \"q\" \\ \n\u0001","n":[1,-2,0.5,1e+300,true,false,null],"o":{"k":{}}})";
  const Value v = parse(text);
  const std::string written = serialize(v);
  EXPECT_EQ(parse(written), v);
  // Control characters are escaped; the rest is written compactly.
  EXPECT_NE(written.find("\\u0001"), std::string::npos) << written;
  EXPECT_EQ(written.find(' ', written.find("\"n\"")), std::string::npos) << written;
}

TEST(JsonSerialize, WritesExactDoubles) {
  const double values[] = {0.1, 1.0 / 3.0, -1e-310, 123456789.125};
  for (double d : values) {
    const Value back = parse(serialize(Value(d)));
    EXPECT_EQ(back.as_number(), d);
  }
  EXPECT_EQ(serialize(Value(int64_t{-42})), "-42");
  EXPECT_THROW(serialize(Value(std::numeric_limits<double>::infinity())), Error);
}

TEST(JsonValue, TypedAccessorsNameWhatWasWrong) {
  const Value v = parse(R"({"device": "zero"})");
  try {
    v.find("device")->as_int64("config key 'device'");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_STREQ(e.what(), "config key 'device': expected number, got string");
  }
  EXPECT_THROW(parse("1.5").as_int64(), Error);
}

TEST(JsonValue, SetReplacesOrAppends) {
  Value v{Object{}};
  v.set("a", Value(int64_t{1}));
  v.set("b", Value("x"));
  v.set("a", Value(true));
  EXPECT_EQ(serialize(v), R"({"a":true,"b":"x"})");
  Value not_object{Array{}};
  EXPECT_THROW(not_object.set("a", Value()), Error);
}

}  // namespace
}  // namespace kiln::json
