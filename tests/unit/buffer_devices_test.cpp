#include "runtime/buffer_devices.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace kiln::detail {
namespace {

TEST(MgpuCheckedBuffers, RemembersTheSixteenMostRecentPointers) {
  std::array<float, 20> storage{};
  CheckedBuffers checked;
  EXPECT_FALSE(checked.contains(&storage[0]));
  for (size_t i = 0; i < 16; ++i) checked.add(&storage[i]);
  for (size_t i = 0; i < 16; ++i) EXPECT_TRUE(checked.contains(&storage[i])) << i;
  EXPECT_FALSE(checked.contains(&storage[16]));
  // The 17th and 18th evict the oldest two.
  checked.add(&storage[16]);
  checked.add(&storage[17]);
  EXPECT_FALSE(checked.contains(&storage[0]));
  EXPECT_FALSE(checked.contains(&storage[1]));
  EXPECT_TRUE(checked.contains(&storage[2]));
  EXPECT_TRUE(checked.contains(&storage[17]));
}

TEST(MgpuCheckedBuffers, HostBuffersPassTheDeviceCheckAndAreNotRemembered) {
  // Host memory is not device memory of another GPU: the check leaves it to the call, with or
  // without CUDA in this build and with or without a GPU on this machine.
  std::vector<float> x(6, 1.0f), y(2, 0.0f);
  const std::vector<NamedTensor> inputs{{"x", TensorRef{DType::kFloat32, {2, 3}, x.data()}}};
  const std::vector<NamedTensor> outputs{{"y", TensorRef{DType::kFloat32, {2}, y.data()}},
                                         {"empty", TensorRef{DType::kFloat32, {0}, nullptr}}};
  CheckedBuffers checked;
  EXPECT_NO_THROW(check_buffer_devices(checked, 0, inputs, outputs));
  EXPECT_NO_THROW(check_buffer_devices(checked, 1, inputs, outputs));
  EXPECT_FALSE(checked.contains(x.data()));
  EXPECT_FALSE(checked.contains(y.data()));
}

}  // namespace
}  // namespace kiln::detail
