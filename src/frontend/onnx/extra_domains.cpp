#include "frontend/onnx/extra_domains.hpp"

#include <set>

#include "ops/op_registry.hpp"

namespace kiln::onnx {

bool is_extra_domain_op(std::string_view op_type, const std::string& domain) {
  const ops::OpDef* def = ops::find_op(op_type);
  return !domain.empty() && def != nullptr && def->domain == domain;
}

bool is_extra_domain(const std::string& domain) {
  static const std::set<std::string, std::less<>> domains = [] {
    std::set<std::string, std::less<>> found;
    for (const std::string& name : ops::op_registry().names()) {
      const std::string& op_domain = ops::find_op(name)->domain;
      if (!op_domain.empty()) found.insert(op_domain);
    }
    return found;
  }();
  return domains.count(domain) != 0;
}

std::string extra_domain_refusal(std::string_view op_type, const std::string& domain) {
  if (domain == kTrainingDomain && op_type == "Gradient") {
    return "is not supported by kiln: Gradient differentiates a graph, and kiln runs graphs "
           "without computing their derivatives (the domain's Adagrad, Adam and Momentum do run)";
  }
  return "";
}

}  // namespace kiln::onnx
