#include "frontend/onnx/extra_domains.hpp"

namespace kiln::onnx {

bool is_extra_domain_op(std::string_view op_type, const std::string& domain) {
  if (domain == kTrainingDomain) {
    return op_type == "Adagrad" || op_type == "Adam" || op_type == "Momentum";
  }
  if (domain == kMlDomain) {
    return op_type == "Binarizer" || op_type == "ArrayFeatureExtractor";
  }
  return false;
}

bool is_extra_domain(const std::string& domain) {
  return domain == kTrainingDomain || domain == kMlDomain;
}

std::string extra_domain_refusal(std::string_view op_type, const std::string& domain) {
  if (domain == kTrainingDomain && op_type == "Gradient") {
    return "is not supported by kiln: Gradient differentiates a graph, and kiln runs graphs "
           "without computing their derivatives (the domain's Adagrad, Adam and Momentum do run)";
  }
  return "";
}

}  // namespace kiln::onnx
