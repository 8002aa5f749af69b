// Semantic checks of an EngineModel: every index in range, every enum value known, weights inside
// the blob, the memory plan sized to the tensors, kernel modules consistent with the target and
// the layers that name them, metadata a strict UTF-8 JSON object. The writer runs them on what it
// is given, the
// reader on what it decoded, so a verified engine can be used without further checks.
#pragma once

#include <string>

#include "format/engine_model.hpp"

namespace kiln::format {

// Throws kiln::Error(`code`, "<context>: <what is wrong, where, expected vs got>").
void validate_engine_model(const EngineModel& model, ErrorCode code, const std::string& context);

}  // namespace kiln::format
