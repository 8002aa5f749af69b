// Internal state behind kiln::Engine and kiln::ExecutionContext.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "base/memory_limit.hpp"
#include "format/engine_model.hpp"
#include "kiln/runtime.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cuda {
struct DeviceEngine;  // src/backends/cuda/cuda_executor.hpp
}

namespace kiln::detail {

// Alignment of every arena tensor (cuBLASLt/cuDNN and 16-byte vector loads like 256-byte alignment).
inline constexpr uint64_t kArenaAlignment = 256;

struct PreparedLayer {
  const ops::OpDef* def = nullptr;
  const cpu::CpuKernel* kernel = nullptr;
  // Runs while shapes are propagated, on the host, because a later layer needs the *values* of
  // its outputs to know its own output shapes (a shape tensor computed at run time).
  bool computes_shape_values = false;
  // A Reshape-like layer whose output is its input's bytes under another shape: the output shares
  // the input's arena memory and the layer launches nothing.
  bool is_view = false;
  // For a view that selects a contiguous slab (Gather of one index, or a Slice, along an axis
  // whose outer dims are all 1): the axis and the first index taken; the output then starts
  // view_start * (elements after view_axis) elements into its input. -1: no offset.
  int view_axis = -1;
  int64_t view_start = 0;
  // Its op's output sizes depend on input data (OpDef::data_dependent_shapes) and it runs in the
  // executor (not during shape propagation): the plan stops after it (see EngineState::segment_ends).
  bool ends_segment = false;
};

// Immutable after load; shared by every context and thread.
struct EngineState {
  format::EngineModel model;
  std::string source;                       // path or "<bytes>", for messages
  std::vector<BindingInfo> inputs;
  std::vector<BindingInfo> outputs;
  std::vector<PreparedLayer> layers;
  // Per tensor: a host copy of a weight whose value infer functions need (else null).
  std::vector<std::shared_ptr<const HostTensor>> weight_values;
  // Per tensor: index of the producing layer, -1 for inputs and weights.
  std::vector<int32_t> producer;
  // Per tensor: the activation whose memory it shares (itself unless a view layer wrote it).
  std::vector<int32_t> storage_of;
  bool has_views = false;
  // Per activation tensor: [first_use, last_use] layer indices, for re-planning the arena; for the
  // tensor that owns shared storage, the span of every tensor sharing it.
  std::vector<int32_t> first_use;
  std::vector<int32_t> last_use;
  // True when any shape-value layer reads an input's data: then cached shapes are keyed by values too.
  bool shapes_depend_on_input_values = false;
  // True when some output is computed by a shape-value layer.
  bool has_shape_value_outputs = false;

  // Data-dependent shapes. The layers split into segments, each ending after a layer whose output
  // sizes depend on its input data (PreparedLayer::ends_segment), the last at the end: one
  // segment {layers.size()} for engines without such layers. A context plans segment k (shapes,
  // and an arena of its own for the tensors its layers write) only after segment k-1 ran and its
  // last layer reported its real output shapes.
  std::vector<size_t> segment_ends;
  // Per tensor: the segment whose layers write it (0 for inputs and weights).
  std::vector<int32_t> segment_of;
  // Per output binding: its shape is known only once the engine ran (it is written by a
  // data-dependent layer or after one).
  std::vector<bool> output_shape_data_dependent;
  // Some layer the executor runs has data-dependent output sizes (even when it is the last one).
  bool data_dependent = false;
  bool has_data_dependent_shapes() const { return data_dependent; }

  // The most bytes one context may plan: its arena, and each tensor computed on the host during
  // shape propagation. KILN_MEMORY_LIMIT when set (read at load), else the physical memory (CPU
  // engines) or the GPU's memory (CUDA engines).
  MemoryLimit memory_limit;

  // CUDA engines: the GPU they are bound to, their weights there and their kernels.
  std::shared_ptr<const cuda::DeviceEngine> cuda;

  const format::TensorDesc& tensor(int32_t index) const { return model.tensors[static_cast<size_t>(index)]; }
  // A view of weight tensor `index` inside the engine's weights blob.
  TensorView weight_view(int32_t index) const;
};

// The checks a load makes that need no device, on an engine built for another machine (a
// cross-compiled cuda engine): every op known, the CPU kernels of the layers the host runs, and
// for a cuda engine shapes that do not depend on input values and a CUDA kernel for every layer
// the GPU runs. Throws what Engine::load_bytes would (kUnsupported listing the layers).
void check_loadable_off_device(const format::EngineModel& model, const std::string& source);

}  // namespace kiln::detail
