#include "backends/kernel_support.hpp"

#include <string_view>

namespace kiln::backends {

std::vector<DType> DTypeSet::members() const {
  std::vector<DType> out;
  for (int raw = 0; raw < 64; ++raw) {
    if (is_valid_dtype(raw) && contains(static_cast<DType>(raw))) out.push_back(static_cast<DType>(raw));
  }
  return out;
}

std::string DTypeSet::names() const {
  if (is_all()) return "any dtype";
  std::string out;
  for (DType d : members()) out += (out.empty() ? "" : ", ") + std::string(dtype_name(d));
  return out.empty() ? "no dtype" : out;
}

namespace {

// "input 0 'x'" / "output 1 'y'".
std::string describe(std::string_view role, size_t index, const format::TensorDesc& tensor) {
  return std::string(role) + " " + std::to_string(index) + " '" + tensor.name + "'";
}

const format::TensorDesc* tensor_at(const format::EngineModel& model, int32_t id) {
  if (id < 0 || static_cast<size_t>(id) >= model.tensors.size()) return nullptr;
  return &model.tensors[static_cast<size_t>(id)];
}

std::string refusal(const std::string& what, const format::TensorDesc& tensor, DTypeSet takes,
                    std::string_view backend) {
  return what + " is " + std::string(dtype_name(tensor.dtype)) + "; the " + std::string(backend) +
         " kernel takes " + takes.names();
}

}  // namespace

std::string check_kernel_support(const KernelSupport& support, const format::EngineModel& model,
                                 const format::Layer& layer, std::string_view backend) {
  const auto check_tensors = [&](std::string_view role, const std::vector<int32_t>& ids) -> std::string {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0) continue;
      const format::TensorDesc* tensor = tensor_at(model, ids[i]);
      if (!tensor) {
        return std::string(role) + " " + std::to_string(i) + " names tensor " + std::to_string(ids[i]) +
               ", which the engine lacks";
      }
      if (!support.every_tensor.contains(tensor->dtype)) {
        return refusal(describe(role, i, *tensor), *tensor, support.every_tensor, backend);
      }
    }
    return "";
  };
  if (std::string reason = check_tensors("input", layer.inputs); !reason.empty()) return reason;
  if (std::string reason = check_tensors("output", layer.outputs); !reason.empty()) return reason;
  for (const InputDTypes& rule : support.inputs) {
    for (const int i : rule.inputs) {
      if (i < 0 || static_cast<size_t>(i) >= layer.inputs.size()) continue;
      const format::TensorDesc* tensor = tensor_at(model, layer.inputs[static_cast<size_t>(i)]);
      if (!tensor) continue;  // absent optional input
      if (!rule.dtypes.contains(tensor->dtype)) {
        return refusal(describe("input", static_cast<size_t>(i), *tensor), *tensor, rule.dtypes, backend);
      }
    }
  }
  return support.check ? support.check(model, layer) : std::string();
}

}  // namespace kiln::backends
