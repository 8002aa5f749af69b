// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0 on read; 1.0, or 2.0
// when the header needs it, on write). Only little-endian (or byte-order-free) C-order arrays of
// kiln's element types are accepted:
//   '<f4' float32, '<f2' float16, '<f8' float64, '|i1' int8, '|u1' uint8, '<i2' int16,
//   '<u2' uint16, '<i4' int32, '<u4' uint32, '<i8' int64, '<u8' uint64, '|b1' bool.
// NumPy has no bfloat16, so a bfloat16 tensor is written as its raw bits with descr '<u2'; a '<u2'
// file reads back as uint16, and the CLI takes it as the bits of a bfloat16 input. Likewise float8
// tensors are written as their codes with descr '|u1' (read back as uint8; the CLI takes a uint8
// file for a float8 input as its codes), float8e8m0 and float4e2m1 too; int4/int2 are written as
// '|i1' and uint4/uint2 as '|u1', one value per byte (read back as int8/uint8 and taken for such
// inputs).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kiln/runtime.hpp"

namespace kiln::tools {

// Parses .npy bytes. `source` names the origin in error messages. Throws kiln::Error
// (kCorruptFile for a malformed file, kUnsupported for a valid .npy that kiln cannot take:
// big-endian, Fortran order, another dtype).
Tensor parse_npy(std::span<const uint8_t> bytes, const std::string& source);
// Reads a whole file (kNotFound / kIoError naming the path) and parses it.
Tensor read_npy(const std::string& path);

// Encodes a tensor as .npy bytes. `data` holds shape_numel(shape) * dtype_size(dtype) bytes.
std::vector<uint8_t> encode_npy(DType dtype, const Shape& shape, const void* data);
// Writes a tensor to `path` (kIoError naming the path on failure).
void write_npy(const std::string& path, DType dtype, const Shape& shape, const void* data);

// The .npy descr string kiln writes for a dtype ("<f4", ...).
std::string npy_descr(DType dtype);

}  // namespace kiln::tools
