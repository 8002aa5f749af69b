// For tests that compile CUDA with NVRTC: they must run where configure found NVRTC
// (KILN_EXPECT_NVRTC, set by tests/CMakeLists.txt) and skip, saying why, elsewhere.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "codegen/nvrtc_compiler.hpp"
#include "kiln/types.hpp"

namespace kiln::codegen::testing {

#ifdef KILN_EXPECT_NVRTC
inline constexpr bool kExpectNvrtc = true;
#else
inline constexpr bool kExpectNvrtc = false;
#endif

// Empty when NVRTC loads, else why not.
inline std::string nvrtc_missing_reason() {
  try {
    nvrtc_version();
    return {};
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace kiln::codegen::testing

// In a test body: fails when configure found NVRTC but it does not load, skips when there is none.
#define KILN_SKIP_OR_FAIL_WITHOUT_NVRTC()                                                  \
  do {                                                                                     \
    const std::string nvrtc_reason = ::kiln::codegen::testing::nvrtc_missing_reason();     \
    if (!nvrtc_reason.empty()) {                                                           \
      if (::kiln::codegen::testing::kExpectNvrtc) {                                        \
        FAIL() << "configure found NVRTC, but it fails: " << nvrtc_reason;                 \
      }                                                                                    \
      GTEST_SKIP() << nvrtc_reason;                                                        \
    }                                                                                      \
  } while (0)
