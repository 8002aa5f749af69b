// invoke_cpu_kernel: float16 tensors computed in float32 around kernels that ask for it, and the
// sizes a data-dependent kernel reports through its output views kept across that conversion.
#include "backends/cpu/cpu_node_runner.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "base/half.hpp"

namespace kiln::cpu {
namespace {

// Keeps the elements of x above 1 (in float32, as float_compute promises) and reports how many.
void keep_above_one(KernelContext& ctx) {
  ASSERT_EQ(ctx.inputs[0].dtype, DType::kFloat32);
  ASSERT_EQ(ctx.outputs[0].dtype, DType::kFloat32);
  const float* x = ctx.inputs[0].as<const float>();
  float* y = ctx.outputs[0].as<float>();
  int64_t kept = 0;
  for (int64_t i = 0; i < ctx.inputs[0].numel(); ++i)
    if (x[i] > 1.0f) y[kept++] = x[i];
  ctx.outputs[0].shape = Shape{kept};
}

TEST(CpuNodeRunner, HalfOutputsKeepTheSizesADataDependentKernelReports) {
  const std::vector<float> values{0.5f, 2.0f, 3.5f, -1.0f, 4.0f};
  std::vector<uint16_t> x, y(values.size(), 0);
  for (float v : values) x.push_back(float_to_half(v));
  std::vector<TensorView> inputs{TensorView{DType::kFloat16, Shape{5}, x.data()}};
  std::vector<TensorView> outputs{TensorView{DType::kFloat16, Shape{5}, y.data()}};  // the bound
  AttributeMap attrs;
  KernelContext ctx{"n", "KeepAboveOne", attrs, inputs, outputs};
  invoke_cpu_kernel(CpuKernel{&keep_above_one, /*float_compute=*/true}, ctx);
  ASSERT_EQ(outputs[0].shape, (Shape{3}));
  EXPECT_EQ(half_to_float(y[0]), 2.0f);
  EXPECT_EQ(half_to_float(y[1]), 3.5f);
  EXPECT_EQ(half_to_float(y[2]), 4.0f);
  EXPECT_EQ(y[3], 0u);  // past the reported size nothing was written
}

}  // namespace
}  // namespace kiln::cpu
