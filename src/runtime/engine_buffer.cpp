#include <utility>

#include "base/error.hpp"
#include "runtime/engine_state.hpp"

namespace kiln {

// Memory in the engine's address space comes from its backend, for the device it is bound to.
EngineBuffer::EngineBuffer(const Engine& engine, size_t bytes)
    : size_(bytes), device_(engine.state().bound->device()), backend_(engine.state().backend) {
  data_ = backend_->allocate(device_, bytes ? bytes : 1);
}

EngineBuffer::~EngineBuffer() { release(); }

EngineBuffer::EngineBuffer(EngineBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      device_(other.device_),
      backend_(other.backend_) {}

EngineBuffer& EngineBuffer::operator=(EngineBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_ = other.device_;
    backend_ = other.backend_;
  }
  return *this;
}

void EngineBuffer::release() noexcept {
  size_ = 0;
  if (!data_) return;
  backend_->release(device_, data_);
  data_ = nullptr;
}

void EngineBuffer::copy_from_host(const void* source, size_t bytes) {
  if (bytes > size_) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes into a buffer of ", size_);
  if (bytes == 0) return;
  if (!source) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes from a null pointer");
  backend_->copy_from_host(device_, data_, source, bytes);
}

void EngineBuffer::copy_to_host(void* destination, size_t bytes) const {
  if (bytes > size_) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes out of a buffer of ", size_);
  if (bytes == 0) return;
  if (!destination) fail(ErrorCode::kInvalidArgument, "copy of ", bytes, " bytes to a null pointer");
  backend_->copy_to_host(device_, destination, data_, bytes);
}

void synchronize(const Engine& engine, void* stream) {
  const detail::EngineState& state = engine.state();  // a moved-from Engine throws in every build
  state.backend->synchronize(state.bound->device(), stream);
}

}  // namespace kiln
