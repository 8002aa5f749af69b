// Engine file serialisation. The reader treats its input as hostile: it verifies everything
// (magic, versions, checksum, bounds, indices, enum values, weight ranges) before returning.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "format/engine_model.hpp"

namespace kiln::format {

// Serialises `model` (its version fields are ignored: the writer stamps the current ones).
// Throws kInvalidArgument when the model is inconsistent (an index out of range, ...).
std::vector<uint8_t> write_engine(const EngineModel& model);

// Parses and verifies engine bytes. `bytes` is kept alive by the returned model (weights are not
// copied). `source` names the origin (a path, or "<bytes>") in every error message.
// Throws kiln::Error:
//   kCorruptFile  - not an engine, truncated, checksum mismatch, any out-of-bounds or invalid field,
//                   metadata that is not a strict UTF-8 JSON object (naming section 'metadata');
//   kIncompatible - a major format version this reader does not know ("engine format 2.0 is newer
//                   than this runtime's 1.0: rebuild the engine or update kiln").
EngineModel read_engine(std::shared_ptr<const std::vector<uint8_t>> bytes, const std::string& source);

// Reads a whole file (kIoError / kNotFound naming the path on failure) and calls read_engine.
EngineModel read_engine_file(const std::string& path);

}  // namespace kiln::format
