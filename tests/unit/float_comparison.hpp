// Element-wise float comparison for kernel tests: NaN where the reference has NaN, the same
// infinity where it has one, else |got - want| <= tolerance * (1 + |want|); at most five failures
// reported, each naming the element.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace kiln::testing {

inline void expect_floats_close(const std::vector<float>& got, const std::vector<float>& want, float tolerance,
                                const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name;
  size_t mismatches = 0;
  for (size_t i = 0; i < got.size() && mismatches < 5; ++i) {
    const bool ok = std::isnan(want[i]) ? std::isnan(got[i])
                    : std::isinf(want[i]) ? got[i] == want[i]
                                          : std::fabs(got[i] - want[i]) <= tolerance * (1.0f + std::fabs(want[i]));
    if (!ok) {
      ++mismatches;
      ADD_FAILURE() << name << ": element " << i << " is " << got[i] << ", reference " << want[i];
    }
  }
}

}  // namespace kiln::testing
