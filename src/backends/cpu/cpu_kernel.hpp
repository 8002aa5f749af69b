// The CPU backend's kernel interface. The CPU backend is the reference every other backend is
// checked against, so kernels favour exactness; GEMM and convolution go through BLAS.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/attributes.hpp"
#include "backends/kernel_support.hpp"
#include "base/error.hpp"
#include "base/family_registration.hpp"
#include "base/host_tensor.hpp"

namespace kiln::cpu {

// What a kernel keeps for one layer of one execution context between calls (a prepared oneDNN
// primitive and its reordered weights). Contexts never run concurrently with themselves, so a
// state needs no locking.
struct KernelState {
  virtual ~KernelState() = default;
};

// Everything one kernel call sees. Inputs are dense row-major host tensors; an absent optional
// input has data == nullptr. Outputs are already allocated by the executor with the shapes and
// dtypes that the op's infer function gave, and must be completely written.
struct KernelContext {
  std::string_view node_name;
  std::string_view op;
  const AttributeMap& attrs;
  std::span<const TensorView> inputs;
  std::span<TensorView> outputs;
  // The layer's state slot in this context, empty on its first call; null when the call has no
  // layer behind it (constant folding, shape computations, run_node_on_cpu), in which case the
  // kernel prepares nothing ahead and runs its reference path.
  std::unique_ptr<KernelState>* state = nullptr;
  // Bit i is set when input i is one of the engine's weights: its contents are the same on every
  // call, so a kernel may keep what it derives from them in `state`.
  uint64_t constant_inputs = 0;

  bool input_is_constant(size_t i) const { return i < 64 && (constant_inputs >> i) & 1u; }
  bool has_input(size_t i) const { return i < inputs.size() && inputs[i].data != nullptr; }

  // Throws kiln::Error(code) "node '<name>' (<op>): <message>".
  template <typename... Parts>
  [[noreturn]] void fail(ErrorCode code, Parts&&... parts) const {
    kiln::fail(code, "node '", node_name, "' (", op, "): ", std::forward<Parts>(parts)...);
  }
};

using KernelFn = void (*)(KernelContext&);

struct CpuKernel {
  KernelFn fn = nullptr;
  // When true, the executor converts every float16/bfloat16 input to float32 before the call and
  // every float16/bfloat16 output back after it, so the kernel only ever sees float32 for floating
  // tensors (integer and bool tensors pass through). When false the kernel handles every dtype
  // itself (data movement ops copy bytes).
  bool float_compute = true;
};

// The CPU kernels by op, each with what it takes (backends/kernel_support.hpp). The CPU backend is
// the reference: a kernel takes every dtype its op allows unless its registration says less.
class CpuKernelRegistry {
 public:
  // Throws kInternal on a duplicate op.
  void add(std::string_view op, CpuKernel kernel, backends::KernelSupport support = {});
  const CpuKernel* find(std::string_view op) const;
  // What the kernel of `op` takes, or null when there is none.
  const backends::KernelSupport* find_support(std::string_view op) const;
  std::vector<std::string> ops() const;  // sorted

 private:
  struct Entry {
    CpuKernel kernel;
    backends::KernelSupport support;
  };
  std::unordered_map<std::string, Entry> kernels_;
};

// Every built-in CPU kernel, built on first use (thread-safe).
const CpuKernelRegistry& cpu_kernels();

// The CPU kernel families: each src/backends/cpu/<family>_kernels.cpp defines
// `void register_<family>_kernels(CpuKernelRegistry& registry)`. This is their table, sorted by
// name and generated at build time from those definitions (base/family_registration.hpp), so
// adding a family edits no list; cpu_kernels() registers them all.
using CpuKernelFamily = Family<CpuKernelRegistry>;
std::span<const CpuKernelFamily> cpu_kernel_families();

}  // namespace kiln::cpu
