// The in-memory form of an engine file: what the builder emits and the reader returns after
// verification. docs/engine-format.md describes the bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/attributes.hpp"
#include "kiln/types.hpp"

namespace kiln::format {

// Major changes break readers; minor changes add things older readers may ignore.
inline constexpr uint16_t kFormatMajor = 1;
// 1.1 added the `kernels` section (generated CUDA modules).
inline constexpr uint16_t kFormatMinor = 1;
// Weights, and the weights blob itself, start at multiples of this many bytes.
inline constexpr uint64_t kWeightAlignment = 64;

struct FormatVersion {
  uint16_t major = kFormatMajor;
  uint16_t minor = kFormatMinor;
};

struct Target {
  std::string backend = "cpu";  // "cpu" or "cuda"
  int32_t sm_arch = 0;          // CUDA compute capability * 10 (90 for Hopper); 0 for cpu
  std::string device_name;      // e.g. "NVIDIA H100 80GB HBM3"; informative
};

enum class TensorKind : uint8_t {
  kInput = 1,       // bound by the caller
  kOutput = 2,      // produced by a layer, handed to the caller
  kWeight = 3,      // constant bytes in the weights blob
  kActivation = 4,  // intermediate, lives in the execution context's arena
};

struct TensorDesc {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;                  // kDynamicDim where only known at run time
  TensorKind kind = TensorKind::kActivation;
  uint64_t weight_offset = 0;   // kWeight: byte offset into the weights blob (aligned)
  uint64_t weight_size = 0;     // kWeight: byte count
};

// A dynamic input dimension's allowed range (inclusive), decided at build time.
struct DimRange {
  int64_t min = 1;
  int64_t opt = 1;
  int64_t max = 1;
};

struct Binding {
  std::string name;
  uint32_t tensor = 0;          // index into EngineModel::tensors
  // Inputs only: one range per dimension (min == opt == max for static dims).
  std::vector<DimRange> ranges;
};

struct Layer {
  std::string name;             // the source node's name (for errors and inspect)
  std::string op;               // op type, see src/ops/op_registry.hpp
  std::vector<int32_t> inputs;  // tensor indices; -1 for an absent optional input
  std::vector<int32_t> outputs; // tensor indices
  AttributeMap attrs;
};

// Liveness-based placement of the activation tensors in one arena, for the tensors' build-time
// shapes. `offsets[i]` belongs to tensor i (kNoOffset when tensor i is not an activation).
// `first_use`/`last_use` are layer indices (inclusive) and let the runtime re-plan when dynamic
// dimensions change the sizes.
struct MemoryPlan {
  static constexpr uint64_t kNoOffset = ~uint64_t{0};
  uint64_t arena_size = 0;
  uint64_t alignment = 64;
  bool is_static = false;       // true when every activation shape is static and offsets are valid
  std::vector<uint64_t> offsets;
  std::vector<int32_t> first_use;
  std::vector<int32_t> last_use;
};

// A plugin an engine's layers use (src/plugins/plugin_layer.hpp); the runtime refuses to load the
// engine unless it is registered (include/kiln/plugin.h).
struct PluginRef {
  std::string plugin_namespace;
  std::string name;
  std::string version;
  AttributeMap fields;
  std::string library;  // file name of the library that provided it at build time; may be empty
};

// A CUDA module generated and compiled at build time (src/codegen). Layers that run one of its
// kernels name it in their string attribute kKernelModuleAttribute.
struct KernelModule {
  std::string name;            // unique in the engine; layers name it in attribute "kiln_kernel"
  int32_t sm_arch = 0;         // must equal the engine's target.sm_arch
  std::string compiler;        // e.g. "nvrtc 13.0"; informative
  std::string source;          // the CUDA C++ it was compiled from (for inspect); may be empty
  std::vector<uint8_t> cubin;  // non-empty ELF image for sm_<sm_arch>
};

// The layer attribute naming the KernelModule a layer's kernels live in.
inline constexpr const char* kKernelModuleAttribute = "kiln_kernel";

struct EngineModel {
  FormatVersion version;
  std::string producer = "kiln";   // producer name and version, e.g. "kiln 0.1.0"
  Target target;
  DType precision = DType::kFloat32;
  std::vector<TensorDesc> tensors;
  std::vector<Binding> inputs;
  std::vector<Binding> outputs;
  std::vector<Layer> layers;
  MemoryPlan memory_plan;
  std::vector<PluginRef> plugins;
  std::vector<KernelModule> kernels;  // cuda engines only; none in format 1.0 files
  std::string metadata_json = "{}";

  // Weight bytes: `weights_storage` keeps them alive (it may be the whole file the reader got, so
  // weights are not copied); `weights` points at the blob inside it.
  std::shared_ptr<const void> weights_storage;
  std::span<const uint8_t> weights;
};

}  // namespace kiln::format
