#include "codegen/group_kernels.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <thread>

#include "codegen/group_emitter.hpp"
#include "codegen/group_plan.hpp"
#include "format/checksum.hpp"
#include "ops/fused_group.hpp"

namespace kiln::codegen {

std::vector<ops::ValueInfo> group_input_infos(const ir::Graph& graph, const ir::Node& node) {
  std::vector<ops::ValueInfo> infos;
  for (ir::ValueId in : node.inputs) {
    if (in < 0) {
      infos.push_back(ops::ValueInfo{DType::kFloat32, {}, nullptr, false});
      continue;
    }
    const ir::Value& v = graph.value(in);
    infos.push_back(ops::ValueInfo{v.dtype, v.shape, v.constant.get(), true});
  }
  return infos;
}

std::vector<ops::ValueInfo> group_output_infos(const ir::Graph& graph, const ir::Node& node) {
  std::vector<ops::ValueInfo> infos;
  for (ir::ValueId out : node.outputs) {
    const ir::Value& v = graph.value(out);
    infos.push_back(ops::ValueInfo{v.dtype, v.shape, nullptr, true});
  }
  return infos;
}

namespace {

std::string module_name(const std::string& source) {
  const uint64_t hash =
      format::xxh64(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(source.data()), source.size()));
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "g%016llx", static_cast<unsigned long long>(hash));
  return buffer;
}

std::vector<int64_t> encode_shapes(const GroupPlan& plan) {
  std::vector<int64_t> out;
  for (const std::vector<int64_t>& pattern : plan.patterns) {
    out.push_back(static_cast<int64_t>(pattern.size()));
    out.insert(out.end(), pattern.begin(), pattern.end());
  }
  return out;
}

void annotate(ir::Node& node, const GroupPlan& plan, const GroupKernelSource& kernel, const std::string& module) {
  std::vector<int64_t> symbols, space;
  for (const PlanSymbol& s : plan.symbols) symbols.insert(symbols.end(), {s.tensor, s.axis});
  for (size_t d = 0; d < plan.space.size(); ++d) {
    space.push_back(plan.space[d] == kDynamicDim ? int64_t{-1} - plan.space_symbols[d] : plan.space[d]);
  }
  std::vector<std::string> entries;
  std::vector<int64_t> blocks, per_block, index64, split_partials;
  bool splits = false;
  for (const KernelEntry& e : kernel.entries) {
    entries.push_back(e.name);
    blocks.push_back(e.block);
    per_block.push_back(e.per_block);
    index64.push_back(e.index64 ? 1 : 0);
    split_partials.push_back(e.split_partials);
    splits = splits || e.split_partials > 0;
  }
  node.attrs.set("kiln_kernel", Attribute::of_string(module));
  node.attrs.set("kiln_kernel_symbols", Attribute::of_ints(std::move(symbols)));
  node.attrs.set("kiln_kernel_shapes", Attribute::of_ints(encode_shapes(plan)));
  node.attrs.set("kiln_kernel_space", Attribute::of_ints(std::move(space)));
  node.attrs.set("kiln_kernel_unit", Attribute::of_ints(kernel.unit));
  node.attrs.set("kiln_kernel_multiplier", Attribute::of_int(kernel.multiplier));
  node.attrs.set("kiln_kernel_entries", Attribute::of_strings(std::move(entries)));
  node.attrs.set("kiln_kernel_blocks", Attribute::of_ints(std::move(blocks)));
  node.attrs.set("kiln_kernel_per_block", Attribute::of_ints(std::move(per_block)));
  node.attrs.set("kiln_kernel_index64", Attribute::of_ints(std::move(index64)));
  if (splits) {
    node.attrs.set("kiln_kernel_split_partials", Attribute::of_ints(std::move(split_partials)));
    node.attrs.set("kiln_kernel_split_rows", Attribute::of_ints(kernel.split_rows));
  }
}

}  // namespace

std::vector<format::KernelModule> generate_group_kernels(ir::Graph& graph, int sm_arch, const KernelCache& cache,
                                                         GroupKernelStats* stats) {
  GroupKernelStats local;
  // module name -> source and NVRTC options (the name hashes the source, which names the options)
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> sources;
  for (ir::Node& node : graph.nodes) {
    if (node.removed || node.op_type != "FusedGroup") continue;
    const std::string context = "node '" + node.name + "' (FusedGroup)";
    const ops::GroupProgram program =
        ops::decode_group(context, node.attrs, node.inputs.size(), node.outputs.size());
    const std::vector<ops::ValueInfo> inputs = group_input_infos(graph, node);
    const std::vector<ops::ValueInfo> outputs = group_output_infos(graph, node);
    const GroupPlanResult planned = plan_group(program, inputs, outputs);
    if (!planned.plan) fail(ErrorCode::kInternal, context, ": no kernel can be generated: ", planned.reason);
    const GroupKernelSource kernel = emit_group_kernel(*planned.plan);
    const std::string module = module_name(kernel.source);
    annotate(node, *planned.plan, kernel, module);
    sources.emplace(module, std::make_pair(kernel.source, kernel.nvrtc_options));
    ++local.groups;
  }
  local.modules = static_cast<int>(sources.size());

  // NVRTC compiles one program per thread; modules are independent.
  std::vector<std::pair<std::string, std::pair<std::string, std::vector<std::string>>>> work(sources.begin(),
                                                                                          sources.end());
  std::vector<format::KernelModule> modules(work.size());
  std::atomic<size_t> next{0};
  std::atomic<int> hits{0};
  const size_t threads = std::min<size_t>(work.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::future<void>> running;
  for (size_t t = 0; t < threads; ++t) {
    running.push_back(std::async(std::launch::async, [&]() {
      for (size_t i = next++; i < work.size(); i = next++) {
        KernelCacheStats one;
        const auto& [source, options] = work[i].second;
        const CompiledModule compiled = compile_cuda_cached(cache, work[i].first, source, sm_arch, options, &one);
        hits += one.hits;
        format::KernelModule& module = modules[i];
        module.name = work[i].first;
        module.sm_arch = sm_arch;
        module.compiler = compiled.compiler;
        module.source = source;
        module.cubin = compiled.cubin;
      }
    }));
  }
  for (std::future<void>& f : running) f.get();  // rethrows the first compile error
  local.cache_hits = hits;
  local.compiled = local.modules - local.cache_hits;
  if (stats) *stats = local;
  return modules;
}

}  // namespace kiln::codegen
