// FusedGroup on CUDA: launches the kernel the builder generated for the group (engine kernels
// section, loaded per engine by GeneratedModules). Prepare checks every tensor's shape against
// the shapes the kernel was specialised to (a kernel must never run on shapes it was not written
// for), computes the symbols and work units, and picks one of the entries by timing them (a
// tactic, recorded like the GEMM and convolution ones). Launch only fills the argument block.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/generated_modules.hpp"
#include "backends/cuda/tactics.hpp"
#include "ops/group_kernel_abi.hpp"

namespace kiln::cuda {
namespace {

using ops::GroupKernelArgs;

struct Entry {
  std::string name;
  int block = 0;
  int64_t per_block = 1;
  bool index64 = false;
  cudaKernel_t kernel = nullptr;
  int64_t split_partials = 0;  // > 0: splits the reduced rows (ops/group_kernel_abi.hpp)
};

struct GroupState : LayerState {
  GroupKernelArgs args{};  // symbols, units and splits; tensors and workspace are filled per launch
  Entry entry;
  unsigned grid = 1;
  std::unique_ptr<DeviceBuffer> counters;  // split entries: one zeroed counter per unit
  size_t workspace_bytes = 0;
};

// The layer's tensors, inputs first, as the kernel numbers them.
std::vector<const TensorView*> layer_tensors(const LaunchContext& ctx) {
  std::vector<const TensorView*> tensors;
  for (const TensorView& t : ctx.inputs) tensors.push_back(&t);
  for (const TensorView& t : ctx.outputs) tensors.push_back(&t);
  return tensors;
}

int64_t decode_dim(const LaunchContext& ctx, int64_t encoded, const std::vector<int64_t>& symbols) {
  if (encoded >= 0) return encoded;
  const int64_t s = -1 - encoded;
  if (s >= static_cast<int64_t>(symbols.size())) ctx.fail(ErrorCode::kCorruptFile, "dim refers to symbol ", s);
  return symbols[static_cast<size_t>(s)];
}

std::string entry_list(const std::vector<Entry>& entries) {
  std::string s;
  for (const Entry& e : entries) s += (s.empty() ? "" : ", ") + e.name;
  return s;
}

std::unique_ptr<LayerState> prepare_group(LaunchContext& ctx, size_t* workspace_bytes) {
  *workspace_bytes = 0;
  if (ctx.generated == nullptr) ctx.fail(ErrorCode::kInternal, "no generated modules were loaded for this engine");
  const std::string module = ctx.attrs.get_string("kiln_kernel");
  const std::vector<const TensorView*> tensors = layer_tensors(ctx);
  if (tensors.size() > static_cast<size_t>(ops::kGroupKernelMaxTensors)) {
    ctx.fail(ErrorCode::kCorruptFile, tensors.size(), " tensors, a generated kernel takes at most ",
             ops::kGroupKernelMaxTensors);
  }

  // Symbols, then every tensor against the shape the kernel was generated for.
  const std::vector<int64_t>& symbol_refs = ctx.attrs.get_ints("kiln_kernel_symbols");
  if (symbol_refs.size() % 2 != 0 || symbol_refs.size() / 2 > static_cast<size_t>(ops::kGroupKernelMaxSymbols)) {
    ctx.fail(ErrorCode::kCorruptFile, "attribute 'kiln_kernel_symbols' has ", symbol_refs.size(), " entries");
  }
  std::vector<int64_t> symbols;
  for (size_t i = 0; i < symbol_refs.size(); i += 2) {
    const int64_t t = symbol_refs[i], axis = symbol_refs[i + 1];
    if (t < 0 || t >= static_cast<int64_t>(tensors.size()) || axis < 0 ||
        axis >= static_cast<int64_t>(tensors[static_cast<size_t>(t)]->shape.size())) {
      ctx.fail(ErrorCode::kCorruptFile, "symbol ", i / 2, " refers to dim ", axis, " of tensor ", t);
    }
    symbols.push_back(tensors[static_cast<size_t>(t)]->shape[static_cast<size_t>(axis)]);
  }
  const std::vector<int64_t>& shapes = ctx.attrs.get_ints("kiln_kernel_shapes");
  size_t at = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    if (at >= shapes.size()) ctx.fail(ErrorCode::kCorruptFile, "attribute 'kiln_kernel_shapes' ends at tensor ", t);
    const auto rank = static_cast<size_t>(shapes[at++]);
    const Shape& actual = tensors[t]->shape;
    bool matches = rank == actual.size() && at + rank <= shapes.size();
    Shape expected;
    for (size_t d = 0; d < rank && at + d < shapes.size(); ++d) {
      const int64_t encoded = shapes[at + d];
      const int64_t dim = encoded == kDynamicDim ? actual.size() > d ? actual[d] : -1 : decode_dim(ctx, encoded, symbols);
      expected.push_back(dim);
      matches = matches && d < actual.size() && dim == actual[d];
    }
    at += rank;
    if (!matches) {
      ctx.fail(ErrorCode::kUnsupported, t < ctx.inputs.size() ? "input " : "output ",
               t < ctx.inputs.size() ? t : t - ctx.inputs.size(), " has shape ", shape_to_string(actual),
               " but the layer's generated kernel was built for ", shape_to_string(expected),
               " (a dynamic dim must take the same value in every tensor that shares it, and dims the build saw "
               "as 1 or as fixed must stay so); rebuild with a profile that covers these shapes");
    }
  }

  auto product = [&](const std::vector<int64_t>& dims) {
    int64_t p = 1;
    for (int64_t d : dims) p *= decode_dim(ctx, d, symbols);
    return p;
  };
  const int64_t space = product(ctx.attrs.get_ints("kiln_kernel_space"));
  const int64_t unit = product(ctx.attrs.get_ints("kiln_kernel_unit"));
  const int64_t multiplier = ctx.attrs.get_int_or("kiln_kernel_multiplier", 1);
  if (unit <= 0 || multiplier <= 0) ctx.fail(ErrorCode::kCorruptFile, "work unit of ", unit, " x ", multiplier);
  auto state = std::make_unique<GroupState>();
  state->args.units = space / unit * multiplier;
  for (size_t s = 0; s < symbols.size(); ++s) state->args.symbols[s] = symbols[s];
  if (state->args.units == 0) return state;

  // The entries that may run this size.
  const std::vector<std::string>& names = ctx.attrs.get("kiln_kernel_entries").strings;
  const std::vector<int64_t>& blocks = ctx.attrs.get_ints("kiln_kernel_blocks");
  const std::vector<int64_t>& per_block = ctx.attrs.get_ints("kiln_kernel_per_block");
  const std::vector<int64_t>& index64 = ctx.attrs.get_ints("kiln_kernel_index64");
  if (names.empty() || blocks.size() != names.size() || per_block.size() != names.size() ||
      index64.size() != names.size()) {
    ctx.fail(ErrorCode::kCorruptFile, "the kiln_kernel_entries/blocks/per_block/index64 attributes disagree");
  }
  const std::vector<int64_t> no_splits(names.size(), 0);
  const std::vector<int64_t>& split_partials =
      ctx.attrs.has("kiln_kernel_split_partials") ? ctx.attrs.get_ints("kiln_kernel_split_partials") : no_splits;
  if (split_partials.size() != names.size()) {
    ctx.fail(ErrorCode::kCorruptFile, "attribute 'kiln_kernel_split_partials' has ", split_partials.size(),
             " entries for ", names.size(), " kernel entries");
  }
  const bool fits32 = space < (int64_t{1} << 31) - 4096;
  const int sms = ctx.device ? std::max(1, ctx.device->multiprocessors) : 132;
  // Splits of the reduced rows for split entries: enough blocks to fill the GPU about twice, each
  // slice keeping at least 64 rows.
  int64_t splits = 1;
  if (std::any_of(split_partials.begin(), split_partials.end(), [](int64_t p) { return p > 0; })) {
    const int64_t rows = product(ctx.attrs.get_ints("kiln_kernel_split_rows"));
    const int64_t wanted = (int64_t{2} * sms * 4 + state->args.units - 1) / state->args.units;
    splits = std::clamp<int64_t>(std::min(wanted, rows / 64), 1, 1024);
  }
  const char* forced = std::getenv("KILN_GROUP_ENTRY");  // a test hook: entries whose name contains it
  std::vector<Entry> candidates;
  for (size_t e = 0; e < names.size(); ++e) {
    if (blocks[e] < 1 || blocks[e] > 1024 || per_block[e] < 1 || split_partials[e] < 0) {
      ctx.fail(ErrorCode::kCorruptFile, "entry '", names[e], "' has block ", blocks[e], ", ", per_block[e],
               " units per block and ", split_partials[e], " partials");
    }
    if (!index64[e] && !fits32) continue;
    if (split_partials[e] > 0 && splits < 2) continue;  // splitting would not add blocks
    if (forced && *forced && names[e].find(forced) == std::string::npos) continue;
    candidates.push_back(Entry{names[e], static_cast<int>(blocks[e]), per_block[e], index64[e] != 0,
                               ctx.generated->kernel(module, names[e]), split_partials[e]});
  }
  if (candidates.empty() && forced && *forced) {
    ctx.fail(ErrorCode::kInvalidArgument, "KILN_GROUP_ENTRY='", forced, "' matches no usable entry of module '",
             module, "'");
  }
  const auto split_workspace = [&](const Entry& e) {
    return e.split_partials > 0
               ? static_cast<size_t>(state->args.units) * static_cast<size_t>(splits) *
                     static_cast<size_t>(e.split_partials) * sizeof(float)
               : size_t{0};
  };
  std::erase_if(candidates, [&](const Entry& e) { return split_workspace(e) > ctx.workspace_size; });
  state->args.splits = splits;
  // 64-bit entries only where 32 bits do not fit.
  if (fits32 && std::any_of(candidates.begin(), candidates.end(), [](const Entry& e) { return !e.index64; })) {
    std::erase_if(candidates, [](const Entry& e) { return e.index64; });
  }
  if (candidates.empty()) {
    ctx.fail(ErrorCode::kUnsupported, "the generated kernel indexes with 32 bits but the space has ", space,
             " elements");
  }
  const bool any_split =
      std::any_of(candidates.begin(), candidates.end(), [](const Entry& e) { return e.split_partials > 0; });
  if (any_split) {
    state->counters = std::make_unique<DeviceBuffer>(static_cast<size_t>(state->args.units) * sizeof(unsigned));
    KILN_CUDA_CHECK(cudaMemset(state->counters->get(), 0, state->counters->size()));
    state->args.counters = static_cast<unsigned*>(state->counters->get());
  }
  auto grid_for = [&](const Entry& e) {
    const int64_t work = e.split_partials > 0 ? state->args.units * splits : state->args.units;
    const int64_t blocks_needed = (work + e.per_block - 1) / e.per_block;
    const int64_t cap = int64_t{sms} * std::max(1, 2048 / e.block) * 4;
    return static_cast<unsigned>(std::clamp<int64_t>(blocks_needed, 1, std::max<int64_t>(cap, 1)));
  };

  // Appended piecewise: GCC 12 warns (-Wrestrict) about chained std::string operator+ here.
  std::string key("FusedGroup ");
  key += module;
  for (int64_t s : symbols) {
    key += ' ';
    key += std::to_string(s);
  }
  key += ' ';
  key += device_tag(ctx);
  const Entry* chosen = nullptr;
  if (candidates.size() == 1) {
    chosen = &candidates[0];
  } else if (const std::optional<std::string> known = known_tactic(ctx, key)) {
    for (const Entry& e : candidates)
      if (e.name == *known) chosen = &e;
  }
  if (chosen == nullptr && candidates.size() > 1 && tuning_active()) {
    // Time each entry on scratch outputs (the layer's own buffers may hold live data).
    std::vector<DeviceBuffer> scratch;
    GroupKernelArgs args = state->args;
    for (size_t i = 0; i < ctx.inputs.size(); ++i) args.tensors[i] = ctx.inputs[i].data;
    for (size_t o = 0; o < ctx.outputs.size(); ++o) {
      scratch.emplace_back(std::max<size_t>(ctx.outputs[o].nbytes(), 256));
      args.tensors[ctx.inputs.size() + o] = scratch.back().get();
    }
    size_t most_workspace = 0;
    for (const Entry& e : candidates) most_workspace = std::max(most_workspace, split_workspace(e));
    if (most_workspace > 0) {
      scratch.emplace_back(most_workspace);
      args.workspace = scratch.back().get();
    }
    float best = std::numeric_limits<float>::infinity();
    for (const Entry& e : candidates) {
      const unsigned grid = grid_for(e);
      const float ms = time_on_stream(ctx.stream, 5, [&] {
        void* params[] = {&args};
        return cudaLaunchKernel(reinterpret_cast<const void*>(e.kernel), dim3(grid), dim3(static_cast<unsigned>(e.block)),
                                params, 0, ctx.stream) == cudaSuccess;
      });
      if (tactic_logging()) std::fprintf(stderr, "kiln tactic: layer '%s' %s: %.4f ms\n", std::string(ctx.node_name).c_str(), e.name.c_str(), ms);
      if (ms < best) {
        best = ms;
        chosen = &e;
      }
    }
    if (chosen == nullptr) ctx.fail(ErrorCode::kDeviceError, "no entry of module '", module, "' (", entry_list(candidates), ") ran");
  }
  if (chosen == nullptr) {
    // Untuned: the 256-thread entry, a sound default for memory-bound kernels.
    chosen = &candidates[0];
    for (const Entry& e : candidates)
      if (e.block == 256) chosen = &e;
  }
  state->entry = *chosen;
  state->grid = grid_for(*chosen);
  state->workspace_bytes = split_workspace(*chosen);
  *workspace_bytes = state->workspace_bytes;
  if (candidates.size() > 1) report_tactic(ctx, key, chosen->name);
  return state;
}

void launch_group(LaunchContext& ctx) {
  const auto* state = dynamic_cast<const GroupState*>(ctx.state);
  if (state == nullptr) ctx.fail(ErrorCode::kInternal, "launched without a prepared state");
  if (state->args.units == 0) return;
  GroupKernelArgs args = state->args;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) args.tensors[i] = ctx.inputs[i].data;
  for (size_t o = 0; o < ctx.outputs.size(); ++o) args.tensors[ctx.inputs.size() + o] = ctx.outputs[o].data;
  if (state->workspace_bytes > 0) {
    if (ctx.workspace == nullptr) ctx.fail(ErrorCode::kInternal, "launched without the workspace prepare asked for");
    args.workspace = ctx.workspace;
  }
  void* params[] = {&args};
  const cudaError_t status =
      cudaLaunchKernel(reinterpret_cast<const void*>(state->entry.kernel), dim3(state->grid),
                       dim3(static_cast<unsigned>(state->entry.block)), params, 0, ctx.stream);
  if (status != cudaSuccess) {
    ctx.fail(ErrorCode::kDeviceError, "generated kernel '", state->entry.name, "' failed to launch: ",
             cudaGetErrorString(status));
  }
}

}  // namespace

void register_fused_kernels(CudaKernelRegistry& registry) {
  // Generated kernels load, compute and store float32, float16, bfloat16 and bool only
  // (codegen/group_plan.cpp refuses a group with another dtype; the fusion never forms one).
  registry.add(
      "FusedGroup", CudaKernel{prepare_group, launch_group},
      {.every_tensor = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kBool}});
}

}  // namespace kiln::cuda
