#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/error.hpp"
#include "runtime/engine_state.hpp"

#if KILN_WITH_CUDA
#include "backends/cuda/cuda_device.hpp"
#include "backends/cuda/cuda_executor.hpp"
#endif

namespace kiln {
namespace {

int device_of(const detail::EngineState& state) {
#if KILN_WITH_CUDA
  if (state.cuda) return cuda::engine_device(state);
#else
  (void)state;
#endif
  return -1;
}

}  // namespace

EngineBuffer::EngineBuffer(const Engine& engine, size_t bytes) : size_(bytes), device_(device_of(engine.state())) {
  const size_t allocated = bytes ? bytes : 1;
#if KILN_WITH_CUDA
  if (device_ >= 0) {
    data_ = cuda::allocate(device_, allocated);
    return;
  }
#endif
  data_ = std::malloc(allocated);
  if (!data_) fail(ErrorCode::kOutOfMemory, "cannot allocate ", bytes, " bytes of host memory");
}

EngineBuffer::~EngineBuffer() { release(); }

EngineBuffer::EngineBuffer(EngineBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), device_(other.device_) {}

EngineBuffer& EngineBuffer::operator=(EngineBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_ = other.device_;
  }
  return *this;
}

void EngineBuffer::release() noexcept {
  size_ = 0;
  if (!data_) return;
#if KILN_WITH_CUDA
  if (device_ >= 0) {
    cuda::release(device_, data_);
    data_ = nullptr;
    return;
  }
#endif
  std::free(data_);
  data_ = nullptr;
}

void EngineBuffer::copy_from_host(const void* source, size_t bytes) {
  if (bytes > size_) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes into a buffer of ", size_);
  if (bytes == 0) return;
  if (!source) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes from a null pointer");
#if KILN_WITH_CUDA
  if (device_ >= 0) {
    cuda::copy_host_to_device(device_, data_, source, bytes);
    return;
  }
#endif
  std::memcpy(data_, source, bytes);
}

void EngineBuffer::copy_to_host(void* destination, size_t bytes) const {
  if (bytes > size_) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes out of a buffer of ", size_);
  if (bytes == 0) return;
  if (!destination) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes to a null pointer");
#if KILN_WITH_CUDA
  if (device_ >= 0) {
    cuda::copy_device_to_host(device_, destination, data_, bytes);
    return;
  }
#endif
  std::memcpy(destination, data_, bytes);
}

void synchronize(const Engine& engine, void* stream) {
  const int device = device_of(engine.state());  // a moved-from Engine throws in every build
#if KILN_WITH_CUDA
  if (device >= 0) cuda::synchronize_stream(device, stream);
#else
  (void)device;
  (void)stream;
#endif
}

}  // namespace kiln
