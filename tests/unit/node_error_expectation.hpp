// The check most op tests make of a bad node: running it throws a kiln::Error with the expected
// code whose message names the node and contains a fragment.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "base/error.hpp"

namespace kiln::unit_test {

// Runs `fn`; records a test failure unless it throws kiln::Error with `code` and a message that
// contains both `node` and `fragment`.
inline void expect_node_error(const std::function<void()>& fn, ErrorCode code, const std::string& fragment,
                              const std::string& node = "test_node") {
  try {
    fn();
    ADD_FAILURE() << "expected kiln::Error containing '" << fragment << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(error.code(), code) << message;
    EXPECT_NE(message.find(node), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

}  // namespace kiln::unit_test
