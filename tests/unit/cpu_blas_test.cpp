// The CPU backend loads OpenBLAS itself (backends/cpu/nn_blas.cpp): on a CPU with AVX2/AVX-512 it
// must not run OpenBLAS's generic Prescott kernels, and it must leave the environment as it was.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "graph_test_builder.hpp"

namespace kiln::cpu {
namespace {

TEST(CpuBlas, LoadsOpenBlasWithKernelsForThisCpu) {
  const bool user_chose = std::getenv("OPENBLAS_CORETYPE") != nullptr;
  std::mt19937 rng(3);
  const HostTensor a = testing::random_tensor_f32({4, 8}, rng);
  const HostTensor b = testing::random_tensor_f32({8, 5}, rng);
  const std::vector<const HostTensor*> inputs{&a, &b};
  const std::vector<HostTensor> out = run_node_on_cpu("mm", "MatMul", AttributeMap{}, inputs, 1);
  float want = 0.0f;
  for (int k = 0; k < 8; ++k) want += a.data<float>()[k] * b.data<float>()[k * 5];
  EXPECT_NEAR(out[0].data<float>()[0], want, 1e-5f);

  EXPECT_EQ(std::getenv("OPENBLAS_CORETYPE") != nullptr, user_chose) << "the environment changed";
  void* library = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(library, nullptr) << "the GEMM ran without OpenBLAS loaded";
  using CorenameFn = char* (*)();
  auto corename = reinterpret_cast<CorenameFn>(dlsym(library, "openblas_get_corename"));
  ASSERT_NE(corename, nullptr);
  const std::string core = corename();
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (!user_chose && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_NE(core, "Prescott") << "OpenBLAS runs its generic SSE3 kernels on an AVX2 CPU";
  }
#endif
  dlclose(library);
}

}  // namespace
}  // namespace kiln::cpu
