// TensorProto -> HostTensor: dtype mapping, raw/typed data, external data files.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/host_tensor.hpp"
#include "frontend/onnx/onnx_importer.hpp"
#include "frontend/onnx/onnx_proto.hpp"

namespace kiln::onnx {

// The kiln dtype for an ONNX TensorProto.DataType, or nullopt when kiln has none (string,
// complex, unsigned 16/32/64-bit, float8/4, int4, ...).
std::optional<DType> dtype_from_onnx(int32_t data_type);
// "FLOAT", "STRING", ... for messages; "data_type N" when unknown.
std::string onnx_data_type_name(int32_t data_type);

// Decodes a tensor's contents. Throws kiln::Error, each naming `options.source` and the tensor:
//   kUnsupported  - a data type kiln has no DType for, segmented tensors;
//   kCorruptFile  - negative dims, a byte count that does not match dims * element size, a short
//                   external data file, an external location that is absolute, has a '..'
//                   component or leads outside base_dir through a symbolic link, an external
//                   data path that is not a regular file (see open_external_data);
//   kNotFound     - a missing external data file; kIoError - an unreadable one;
//   kInvalidArgument - external data while options.base_dir is empty (imported from bytes).
std::shared_ptr<const HostTensor> decode_tensor(const proto::Tensor& tensor,
                                                const ImportOptions& options);

}  // namespace kiln::onnx
