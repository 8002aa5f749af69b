// What every fuzz target counts as a finding. kiln's contract for untrusted bytes is "a
// kiln::Error with a message, never anything else", so a target runs its call through
// expect_only_kiln_errors: an expected kiln::Error is swallowed; a kiln::Error with kInternal
// (a KILN_ASSERT tripped by input the verifier let through) or any other exception (a raw
// std::length_error or bad_alloc text escaping to the user) aborts, which libFuzzer and the
// replay driver report as a crash with the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "kiln/types.hpp"

namespace kiln::fuzz {

template <typename Call>
void expect_only_kiln_errors(Call&& call) {
  try {
    call();
  } catch (const kiln::Error& e) {
    if (e.code() == kiln::ErrorCode::kInternal) {
      std::fprintf(stderr, "fuzz: kiln::Error kInternal: %s\n", e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: non-kiln exception escaped: %s\n", e.what());
    std::abort();
  }
}

}  // namespace kiln::fuzz
