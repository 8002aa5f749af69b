// The backends built into this kiln: the one file that knows which were compiled (the runtime
// asks the registry, never KILN_WITH_CUDA). An explicit list rather than static initialisers in
// each backend, which a static link of the backend objects could drop.
#include "backends/backend_registry.hpp"
#include "backends/cpu/cpu_backend.hpp"

#if KILN_WITH_CUDA
#include "backends/cuda/cuda_backend.hpp"
#endif

namespace kiln::backends {

BuiltinBackends builtin_backends() {
  BuiltinBackends builtins;
  builtins.present.push_back(&cpu::cpu_backend());
#if KILN_WITH_CUDA
  builtins.present.push_back(&cuda::cuda_backend());
#else
  builtins.absent.push_back({"cuda", "was built without CUDA"});
#endif
  builtins.host = &cpu::cpu_backend();
  return builtins;
}

}  // namespace kiln::backends
