// torch.classes.kiln.Engine: a kiln engine held by torch (TorchScript modules, ExportedPrograms,
// Python). Owns the engine's file bytes (what it pickles), the loaded kiln::Engine and a pool of
// execution contexts so that several threads can run one engine at once.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/custom_class.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "kiln/runtime.hpp"

namespace kiln::torch_integration {

// Version of the pickled state (see TorchEngine::state). Bump it when the state's layout changes;
// a library reads every state version up to its own.
inline constexpr int64_t kEngineStateVersion = 1;

// The pickled state: (version, engine file bytes as a 1-D uint8 CPU tensor, device index or -1).
using EngineState = std::tuple<int64_t, at::Tensor, int64_t>;

class TorchEngine : public torch::CustomClassHolder {
 public:
  // `serialized`: the engine file's bytes (1-D uint8 CPU tensor, copied). `device_index`: the GPU
  // for a CUDA engine; -1 lets the runtime choose (the current device when compatible). Throws
  // c10::Error naming the problem when the runtime rejects the bytes.
  TorchEngine(const at::Tensor& serialized, int64_t device_index);

  // Pickling: state() is __getstate__; from_state() is __setstate__ and accepts any IValue so that
  // a state written by a newer kiln gets a clear message rather than a type mismatch.
  EngineState state() const;
  static c10::intrusive_ptr<TorchEngine> from_state(const c10::IValue& state);

  const kiln::Engine& engine() const { return engine_; }
  // Where inputs must live and outputs are allocated: cpu, or the GPU the engine is bound to.
  c10::Device device() const { return device_; }
  int64_t device_index() const { return engine_.device_index(); }
  std::string backend() const { return engine_.backend(); }
  at::Tensor serialized() const { return bytes_.clone(); }
  const at::Tensor& serialized_ref() const { return bytes_; }

  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;
  std::vector<std::string> input_dtypes() const;  // torch dtype names: "float32", "float16", ...
  std::vector<std::string> output_dtypes() const;
  std::vector<std::vector<int64_t>> input_shapes() const;  // -1 for dynamic dims
  std::vector<std::vector<int64_t>> output_shapes() const;
  std::vector<std::vector<int64_t>> input_min_shapes() const;
  std::vector<std::vector<int64_t>> input_max_shapes() const;

  // Execution contexts: one per concurrent caller, created on demand and reused.
  class ContextLease {
   public:
    ContextLease(TorchEngine& owner, std::unique_ptr<ExecutionContext> context)
        : owner_(owner), context_(std::move(context)) {}
    ~ContextLease() { owner_.return_context(std::move(context_)); }
    ContextLease(const ContextLease&) = delete;
    ContextLease& operator=(const ContextLease&) = delete;
    ExecutionContext& operator*() const { return *context_; }
    ExecutionContext* operator->() const { return context_.get(); }

   private:
    TorchEngine& owner_;
    std::unique_ptr<ExecutionContext> context_;
  };
  ContextLease lease_context();
  int64_t idle_contexts() const;

 private:
  void return_context(std::unique_ptr<ExecutionContext> context) noexcept;

  at::Tensor bytes_;
  kiln::Engine engine_;
  c10::Device device_;
  mutable std::mutex pool_mutex_;
  std::vector<std::unique_ptr<ExecutionContext>> idle_;
};

}  // namespace kiln::torch_integration
