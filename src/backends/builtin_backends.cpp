// The backends built into this kiln: the one file that knows which were compiled (the runtime
// asks the registry, never KILN_WITH_CUDA). An explicit list rather than static initialisers in
// each backend, which a static link of the backend objects could drop.
//
// The cuda backend is a library of its own (libkiln_backend_cuda.so, beside libkiln_runtime.so),
// loaded on the first cuda engine or cuda query: libkiln_runtime.so does not link the CUDA
// libraries, so a CPU deployment ships none and a process that runs no cuda engine loads none.
#include "backends/backend_registry.hpp"
#include "backends/cpu/cpu_backend.hpp"

namespace kiln::backends {

BuiltinBackends builtin_backends() {
  BuiltinBackends builtins;
  builtins.present.push_back(&cpu::cpu_backend());
#if KILN_WITH_CUDA
  builtins.libraries.push_back({.name = "cuda",
                                .file = "libkiln_backend_cuda.so",
                                .entry = "kiln_backend_cuda_entry",
                                .needs = "the CUDA runtime (libcudart.so.13), cuBLASLt (libcublasLt.so.13), cuDNN 9 "
                                         "(libcudnn.so.9) and the NVIDIA driver where the loader finds them"});
#else
  builtins.absent.push_back({"cuda", "was built without CUDA"});
#endif
  builtins.host = &cpu::cpu_backend();
  return builtins;
}

}  // namespace kiln::backends
