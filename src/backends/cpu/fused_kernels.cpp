// CPU kernel of FusedGroup (ops/fused_group.hpp): the members run one after the other with their
// own CPU kernels, so the reference result of a group is by construction the result of the ops it
// was formed from (each member rounds to its output dtype, as the unfused graph does).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/cpu_node_runner.hpp"
#include "ops/fused_group.hpp"

namespace kiln::cpu {
namespace {

HostTensor copy_of(const TensorView& view) {
  HostTensor tensor(view.dtype, view.shape);
  if (!tensor.bytes.empty()) std::memcpy(tensor.bytes.data(), view.data, tensor.bytes.size());
  return tensor;
}

void fused_group_kernel(KernelContext& ctx) {
  const std::string context = "node '" + std::string(ctx.node_name) + "' (FusedGroup)";
  const ops::GroupProgram program =
      ops::decode_group(context, ctx.attrs, ctx.inputs.size(), ctx.outputs.size());
  std::vector<std::unique_ptr<HostTensor>> inputs(ctx.inputs.size());
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    if (ctx.has_input(i) || ctx.inputs[i].present()) {
      inputs[i] = std::make_unique<HostTensor>(copy_of(ctx.inputs[i]));
    }
  }
  std::vector<HostTensor> results;
  results.reserve(program.members.size());
  for (const ops::GroupMember& member : program.members) {
    std::vector<const HostTensor*> args;
    for (size_t i = 0; i < member.inputs.size(); ++i) {
      const int64_t ref = member.inputs[i];
      if (ref == ops::kGroupAbsent) {
        args.push_back(nullptr);
      } else if (ref == ops::kGroupAttributeValue) {
        args.push_back(member.values[i].get());
      } else if (ref < static_cast<int64_t>(program.num_inputs)) {
        args.push_back(inputs[static_cast<size_t>(ref)].get());
      } else {
        args.push_back(&results[static_cast<size_t>(ref) - program.num_inputs]);
      }
    }
    std::vector<HostTensor> out = run_node_on_cpu(member.name, member.op, member.attrs, args, 1);
    results.push_back(std::move(out.at(0)));
  }
  for (size_t o = 0; o < ctx.outputs.size(); ++o) {
    const HostTensor& result = results[static_cast<size_t>(program.outputs[o])];
    TensorView& out = ctx.outputs[o];
    if (result.dtype != out.dtype || result.shape != out.shape) {
      ctx.fail(ErrorCode::kInternal, "output ", o, " was inferred as ", dtype_name(out.dtype),
               shape_to_string(out.shape), " but member '",
               program.members[static_cast<size_t>(program.outputs[o])].name, "' computed ",
               dtype_name(result.dtype), shape_to_string(result.shape));
    }
    if (!result.bytes.empty()) std::memcpy(out.data, result.bytes.data(), result.bytes.size());
  }
}

}  // namespace

void register_fused_kernels(CpuKernelRegistry& registry) {
  // Members convert 16-bit floats themselves, so the group passes every dtype through.
  registry.add("FusedGroup", CpuKernel{fused_group_kernel, /*float_compute=*/false});
}

}  // namespace kiln::cpu
