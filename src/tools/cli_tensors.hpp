// Engine loading and tensor handling shared by `kiln run` and `kiln bench`: reading inputs from
// .npy files, generating random ones, naming output files and printing values.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/engine_model.hpp"
#include "kiln/runtime.hpp"

namespace kiln::tools {

// An engine file loaded twice over: the runtime Engine to execute it and the verified file model
// for what the runtime API does not expose (e.g. the opt value of dynamic input dims).
struct LoadedEngine {
  format::EngineModel model;
  Engine engine;
};
LoadedEngine load_engine(const std::string& path);

// "--input name=file.npy". The name ends at the first '='.
struct InputFile {
  std::string name;
  std::string path;
};
InputFile parse_input_option(const std::string& text);

// "--shapes NAME:DIMS[,NAME:DIMS...]" (trtexec's syntax): the shape a dynamic input takes at
// run time. The name ends at the last ':' of each item (names may contain ':').
struct InputShape {
  std::string name;
  Shape shape;
};
// Appends the items of one --shapes value to `shapes`; throws UsageError for a malformed item or
// a name given twice.
void parse_shapes_option(const std::string& text, std::vector<InputShape>& shapes);

struct OwnedInput {
  std::string name;
  Tensor tensor;
};

// One tensor per engine input, in the engine's order. Inputs named in `files` are read from
// them (a float file is converted to a float binding of another width, an integer file to an
// integer binding, with a note on stderr). The others are random when `random_missing`
// (floats uniform in [-1, 1), integers in [0, 4), bools 0/1; dynamic dims take their opt value),
// else an error names them. A random input named in `shapes` takes that shape instead of the
// opt one; a file input named there must have it (kInvalidArgument). A file or a shape for a name
// the engine lacks is an error (kNotFound). The runtime checks the shapes against the ranges.
std::vector<OwnedInput> prepare_inputs(const LoadedEngine& loaded,
                                       const std::vector<InputFile>& files, bool random_missing,
                                       uint64_t seed, const std::vector<InputShape>& shapes = {});
// Borrowed views of `inputs` for ExecutionContext::execute.
std::vector<NamedTensor> as_named_tensors(std::vector<OwnedInput>& inputs);

// A file name for a tensor name: characters other than [A-Za-z0-9._-] become '_'.
std::string file_name_for(const std::string& tensor_name);
// Up to `count` leading values, e.g. "[0.125, -1.5, 3, ...]".
std::string format_leading_values(const Tensor& tensor, size_t count);

}  // namespace kiln::tools
