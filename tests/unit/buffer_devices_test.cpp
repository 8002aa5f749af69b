#include "runtime/buffer_devices.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "backends/backend_registry.hpp"

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

// The decision the CUDA check makes from the driver's answer, run in every build: a machine
// without a GPU cannot get an answer from the driver, but it can check what the answer leads to.
NamedTensor bound(const std::string& name, float* data) {
  return {name, TensorRef{DType::kFloat32, {1}, data}};
}

TEST(MgpuCheckedBuffers, HostAndOwnDeviceBuffersThatTheDriverPlacedAreRemembered) {
  std::array<float, 2> storage{};
  CheckedBuffers checked;
  const PointerPlace host{.known = true, .device_memory = false, .device = -1};
  EXPECT_NO_THROW(check_pointer_place(checked, 1, bound("x", &storage[0]), "input", host));
  EXPECT_TRUE(checked.contains(&storage[0]));  // host (pinned, managed) memory: not asked again
  const PointerPlace own_gpu{.known = true, .device_memory = true, .device = 1};
  EXPECT_NO_THROW(check_pointer_place(checked, 1, bound("y", &storage[1]), "output", own_gpu));
  EXPECT_TRUE(checked.contains(&storage[1]));
}

TEST(MgpuCheckedBuffers, DeviceMemoryOfAnotherGpuFailsNamingTheTensorAndBothGpus) {
  float storage = 0.0f;
  CheckedBuffers checked;
  const PointerPlace other_gpu{.known = true, .device_memory = true, .device = 2};
  try {
    check_pointer_place(checked, 0, bound("logits", &storage), "output", other_gpu);
    FAIL() << "expected kInvalidArgument";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string message = e.what();
    EXPECT_NE(message.find("output 'logits'"), std::string::npos) << message;
    EXPECT_NE(message.find("on cuda:2 but the engine is bound to cuda:0"), std::string::npos)
        << message;
  }
  EXPECT_FALSE(checked.contains(&storage));
}

TEST(MgpuCheckedBuffers, PointersTheDriverCouldNotPlaceAreAskedAboutAgain) {
  float storage = 0.0f;
  CheckedBuffers checked;
  EXPECT_NO_THROW(check_pointer_place(checked, 0, bound("x", &storage), "input", PointerPlace{}));
  EXPECT_FALSE(checked.contains(&storage));
}

// Whether this process can ask the driver: a CUDA build on a machine with a GPU. Asking loads the
// cuda backend, so that locate_pointer (which asks only loaded backends) asks it too.
bool driver_answers() {
  const backends::Backend* cuda = backends::find_backend("cuda");
  return cuda != nullptr && cuda->device_count() > 0;
}

TEST(MgpuCheckedBuffers, HostBuffersPassAndAreRememberedWhereTheDriverAnswers) {
  // Host memory is never device memory of another GPU, so it passes in every build. With CUDA and a
  // GPU the driver places it and it is remembered; without CUDA nothing is asked, and a CUDA build
  // on a machine without a GPU gets no answer, so nothing is remembered there.
  // Asked first: asking loads the cuda backend, which locate_pointer must find loaded (ctest runs
  // each test in a fresh process, where nothing has loaded it yet).
  const bool answers = driver_answers();
  std::vector<float> x(6, 1.0f), y(2, 0.0f);
  const std::vector<NamedTensor> inputs{{"x", TensorRef{DType::kFloat32, {2, 3}, x.data()}}};
  const std::vector<NamedTensor> outputs{{"y", TensorRef{DType::kFloat32, {2}, y.data()}},
                                         {"empty", TensorRef{DType::kFloat32, {0}, nullptr}}};
  CheckedBuffers checked;
  EXPECT_NO_THROW(check_buffer_devices(checked, 0, inputs, outputs));
  EXPECT_EQ(checked.contains(x.data()), answers);
  EXPECT_EQ(checked.contains(y.data()), answers);
  // A second call (the pointers remembered or not) passes the same way.
  EXPECT_NO_THROW(check_buffer_devices(checked, 0, inputs, outputs));
}

}  // namespace
}  // namespace kiln::detail
