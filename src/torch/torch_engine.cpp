#include "torch/torch_engine.hpp"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>

#include <string_view>

#include "torch/torch_dtype.hpp"
#include "torch/torch_errors.hpp"

namespace kiln::torch_integration {
namespace {

at::Tensor checked_engine_bytes(const at::Tensor& serialized) {
  TORCH_CHECK(serialized.defined(), "kiln.Engine: the engine bytes tensor is undefined");
  TORCH_CHECK(serialized.device().is_cpu(),
              "kiln.Engine: the engine bytes must be a CPU tensor, got one on ",
              serialized.device());
  TORCH_CHECK(serialized.scalar_type() == c10::ScalarType::Byte,
              "kiln.Engine: the engine bytes must be a uint8 tensor, got ",
              serialized.scalar_type());
  TORCH_CHECK(serialized.dim() == 1, "kiln.Engine: the engine bytes must be a 1-D tensor, got ",
              serialized.dim(), " dimensions");
  // Our own dense copy: the caller's tensor may be a view, be mutated or be freed later.
  return serialized.contiguous().clone();
}

kiln::Engine load_engine(const at::Tensor& bytes, int64_t device_index) {
  TORCH_CHECK(device_index >= -1, "kiln.Engine: device must be a GPU index or -1, got ",
              device_index);
  DeviceSpec spec;
  if (device_index >= 0) spec = DeviceSpec{DeviceSpec::Kind::kCuda, static_cast<int>(device_index)};
  return rethrow_kiln_errors("kiln.Engine: cannot load the engine", [&] {
    return kiln::Engine::load_bytes(bytes.const_data_ptr(), static_cast<size_t>(bytes.numel()),
                                    spec);
  });
}

c10::Device device_of(const kiln::Engine& engine) {
  const int index = engine.device_index();
  if (index < 0) return c10::Device(c10::DeviceType::CPU);
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
}

// The GPU a saved engine asks for, when this process has it; else -1 (the runtime chooses).
int64_t restorable_device(int64_t saved) {
  if (saved < 0 || !c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA)) return -1;
  const auto count = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->deviceCount();
  return saved < count ? saved : -1;
}

std::vector<std::string> names_of(const std::vector<BindingInfo>& bindings) {
  std::vector<std::string> names;
  for (const BindingInfo& b : bindings) names.push_back(b.name);
  return names;
}

std::vector<std::string> dtypes_of(const std::vector<BindingInfo>& bindings) {
  std::vector<std::string> names;
  for (const BindingInfo& b : bindings) names.emplace_back(dtype_name(b.dtype));
  return names;
}

template <typename Member>
std::vector<std::vector<int64_t>> shapes_of(const std::vector<BindingInfo>& bindings,
                                            Member member) {
  std::vector<std::vector<int64_t>> shapes;
  for (const BindingInfo& b : bindings) shapes.emplace_back((b.*member).begin(), (b.*member).end());
  return shapes;
}

}  // namespace

TorchEngine::TorchEngine(const at::Tensor& serialized, int64_t device_index)
    : bytes_(checked_engine_bytes(serialized)),
      engine_(load_engine(bytes_, device_index)),
      device_(device_of(engine_)) {}

EngineState TorchEngine::state() const {
  return EngineState{kEngineStateVersion, bytes_, engine_.device_index()};
}

c10::intrusive_ptr<TorchEngine> TorchEngine::from_state(const c10::IValue& state) {
  TORCH_CHECK(state.isTuple(),
              "kiln.Engine: the saved state is not a kiln engine state (expected a tuple, got ",
              state.tagKind(), ")");
  const auto& elements = state.toTupleRef().elements();
  TORCH_CHECK(!elements.empty() && elements[0].isInt(),
              "kiln.Engine: the saved state is not a kiln engine state (no version number)");
  const int64_t version = elements[0].toInt();
  TORCH_CHECK(version <= kEngineStateVersion,
              "kiln.Engine: this program was saved by a newer kiln (engine state "
              "version ",
              version, "); this libkiln_torch (kiln ", kiln::runtime_version(),
              ") reads state versions up to ", kEngineStateVersion,
              ". Upgrade the kiln runtime libraries to load it.");
  TORCH_CHECK(version >= 1, "kiln.Engine: invalid engine state version ", version);
  TORCH_CHECK(elements.size() == 3 && elements[1].isTensor() && elements[2].isInt(),
              "kiln.Engine: malformed engine state of version 1 (expected (1, Tensor bytes, int "
              "device), got ",
              elements.size(), " fields)");
  return c10::make_intrusive<TorchEngine>(elements[1].toTensor(),
                                          restorable_device(elements[2].toInt()));
}

std::vector<std::string> TorchEngine::input_names() const {
  return names_of(engine_.inputs());
}
std::vector<std::string> TorchEngine::output_names() const {
  return names_of(engine_.outputs());
}
std::vector<std::string> TorchEngine::input_dtypes() const {
  return dtypes_of(engine_.inputs());
}
std::vector<std::string> TorchEngine::output_dtypes() const {
  return dtypes_of(engine_.outputs());
}
std::vector<std::vector<int64_t>> TorchEngine::input_shapes() const {
  return shapes_of(engine_.inputs(), &BindingInfo::shape);
}
std::vector<std::vector<int64_t>> TorchEngine::output_shapes() const {
  return shapes_of(engine_.outputs(), &BindingInfo::shape);
}
std::vector<std::vector<int64_t>> TorchEngine::input_min_shapes() const {
  return shapes_of(engine_.inputs(), &BindingInfo::min_shape);
}
std::vector<std::vector<int64_t>> TorchEngine::input_max_shapes() const {
  return shapes_of(engine_.inputs(), &BindingInfo::max_shape);
}

TorchEngine::ContextLease TorchEngine::lease_context() {
  {
    std::lock_guard lock(pool_mutex_);
    if (!idle_.empty()) {
      auto context = std::move(idle_.back());
      idle_.pop_back();
      return ContextLease(*this, std::move(context));
    }
  }
  // Created outside the lock: contexts are independent, and creation may allocate.
  auto context = rethrow_kiln_errors("kiln.Engine: cannot create an execution context", [&] {
    return std::make_unique<ExecutionContext>(engine_.create_context());
  });
  return ContextLease(*this, std::move(context));
}

void TorchEngine::return_context(std::unique_ptr<ExecutionContext> context) noexcept {
  if (!context) return;
  try {
    std::lock_guard lock(pool_mutex_);
    idle_.push_back(std::move(context));
  } catch (...) {
    // Out of memory growing the pool: dropping the context is correct, only slower next time.
  }
}

int64_t TorchEngine::idle_contexts() const {
  std::lock_guard lock(pool_mutex_);
  return static_cast<int64_t>(idle_.size());
}

}  // namespace kiln::torch_integration
