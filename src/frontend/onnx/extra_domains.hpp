// The ops kiln runs from ONNX domains other than ai.onnx (the ai.onnx.preview.training optimizers,
// ai.onnx.ml's Binarizer and ArrayFeatureExtractor, ...): those whose OpDef names the domain
// (ops::OpDef::domain), so an op family of another domain needs no edit here. The importer gives
// such a node kiln's op of the same name; every other op of these domains stays refused by name.
#pragma once

#include <string>
#include <string_view>

namespace kiln::onnx {

inline constexpr std::string_view kTrainingDomain = "ai.onnx.preview.training";

// True when the registry has an op `op_type` of the (canonical, non-empty) `domain`.
bool is_extra_domain_op(std::string_view op_type, const std::string& domain);

// True for a domain other than ai.onnx that some registered op comes from: a model importing one
// of these but no ai.onnx opset is still imported (its ai.onnx nodes, if any, are refused by name).
bool is_extra_domain(const std::string& domain);

// Why kiln refuses `op_type` of `domain` when it has a reason beyond "not supported" (Gradient:
// kiln does not differentiate graphs); "" otherwise.
std::string extra_domain_refusal(std::string_view op_type, const std::string& domain);

}  // namespace kiln::onnx
