// Every registration libkiln_torch.so makes with torch, in one place. They run from static
// initialisers when the library is loaded (linked with --no-as-needed, dlopen, LD_PRELOAD or
// torch.ops.load_library); nothing else needs to call into the library.
//
// The Python half (the fake class for torch.export and the fake kernel of execute_engine) lives
// in python/kiln/runtime.py.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <cstdio>
#include <deque>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "kiln/runtime.hpp"
#include "torch/execute_engine.hpp"
#include "torch/torch_engine.hpp"

namespace kiln::torch_integration {
namespace {

using EnginePtr = c10::intrusive_ptr<TorchEngine>;

template <typename T>
std::tuple<std::string, T> field(const char* name, T value) {
  return {name, std::move(value)};
}

// __obj_flatten__: what torch.export's fake class (python/kiln/runtime.py, FakeEngine) is built
// from. Plain values only, plus the bytes (fakified by torch, never read by the fake).
auto flatten(const EnginePtr& self) {
  return std::make_tuple(
      field("state_version", kEngineStateVersion), field("serialized", self->serialized_ref()),
      field("device_index", self->device_index()), field("backend", self->backend()),
      field("input_names", self->input_names()), field("input_dtypes", self->input_dtypes()),
      field("input_shapes", self->input_shapes()),
      field("input_min_shapes", self->input_min_shapes()),
      field("input_max_shapes", self->input_max_shapes()),
      field("output_names", self->output_names()), field("output_dtypes", self->output_dtypes()),
      field("output_shapes", self->output_shapes()));
}

bool set_safe_mode(bool enabled) {
  return kiln::set_multi_device_safe_mode(enabled);
}
bool get_safe_mode() {
  return kiln::get_multi_device_safe_mode();
}
std::string runtime_version() {
  return kiln::runtime_version();
}
std::string engine_format_version() {
  return kiln::engine_format_version();
}

// What TORCH_LIBRARY(kiln, m) would define; called once, from the registration below.
void define_kiln_library(torch::Library& m) {
  // Where execute_engine's fake kernel lives: torch names this module when one is needed and
  // missing (e.g. torch.export without `import kiln.runtime`).
  m.set_python_module("kiln.runtime");
  // torch.classes.kiln.Engine(Tensor serialized, int device=-1)
  m.class_<TorchEngine>("Engine")
      .def(torch::init<at::Tensor, int64_t>(),
           "A kiln engine from its file bytes (1-D uint8 CPU tensor)",
           {torch::arg("serialized"), torch::arg("device") = -1})
      .def("input_names", &TorchEngine::input_names)
      .def("output_names", &TorchEngine::output_names)
      .def("input_dtypes", &TorchEngine::input_dtypes)
      .def("output_dtypes", &TorchEngine::output_dtypes)
      .def("input_shapes", &TorchEngine::input_shapes)
      .def("output_shapes", &TorchEngine::output_shapes)
      .def("input_min_shapes", &TorchEngine::input_min_shapes)
      .def("input_max_shapes", &TorchEngine::input_max_shapes)
      .def("backend", &TorchEngine::backend)
      .def("device_index", &TorchEngine::device_index)
      .def("serialized", &TorchEngine::serialized)
      .def("idle_contexts", &TorchEngine::idle_contexts)
      .def("__obj_flatten__", &flatten)
      .def_pickle([](const EnginePtr& self) { return self->state(); },
                  [](c10::IValue state) { return TorchEngine::from_state(state); });

  m.def("execute_engine(Tensor[] inputs, __torch__.torch.classes.kiln.Engine engine) -> Tensor[]");
  m.def("set_multi_device_safe_mode(bool enabled) -> bool", &set_safe_mode);
  m.def("get_multi_device_safe_mode() -> bool", &get_safe_mode);
  m.def("runtime_version() -> str", &runtime_version);
  m.def("engine_format_version() -> str", &engine_format_version);
}

// TORCH_LIBRARY(kiln, ...) and TORCH_LIBRARY_IMPL(kiln, CPU/CUDA, ...), spelled out so that a
// second copy of this library loaded into the same process (one linked in or preloaded, another
// loaded by path) leaves the first copy's registrations in place with a warning: the macros would
// throw from a static initialiser, which terminates the process.
class Registration {
 public:
  Registration() {
    if (c10::Dispatcher::singleton().findSchema({"kiln::execute_engine", ""}).has_value()) {
      std::fprintf(stderr,
                   "kiln: warning: torch.ops.kiln is already registered by another copy of "
                   "libkiln_torch.so; this copy stays unused\n");
      return;
    }
    definitions_.emplace(torch::Library::DEF, "kiln", std::nullopt, __FILE__, __LINE__);
    define_kiln_library(*definitions_);
    // Real kernels for the devices engines run on; the fake (meta) kernel is registered from
    // Python (python/kiln/runtime.py).
    for (c10::DispatchKey key : {c10::DispatchKey::CPU, c10::DispatchKey::CUDA}) {
      torch::Library& impl =
          kernels_.emplace_back(torch::Library::IMPL, "kiln", key, __FILE__, __LINE__);
      impl.impl("execute_engine", &execute_engine);
    }
  }

 private:
  std::optional<torch::Library> definitions_;
  std::deque<torch::Library> kernels_;
};

const Registration registration;

}  // namespace
}  // namespace kiln::torch_integration
