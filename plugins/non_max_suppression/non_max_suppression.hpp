// kiln::NonMaxSuppression, ONNX NonMaxSuppression semantics (README.md in this folder).
#pragma once

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

extern const kiln_plugin_creator kNonMaxSuppressionCreator;

}  // namespace kiln::plugins_lib
