// The engine file schema, in one place: header layout, section ids, wire types and the tag of every
// field. docs/engine-format.md describes the same thing in prose; keep the two in step.
//
// Compatibility rules this schema is built for:
//  - A tag is never reused or given another wire type. New fields get new tags (a minor bump).
//  - Readers skip fields whose tag they do not know and sections whose id they do not know.
//  - Anything an older reader cannot safely ignore needs a major bump or a header flag.
#pragma once

#include <cstdint>
#include <string_view>

namespace kiln::format::schema {

// ---- header -------------------------------------------------------------------------------------
// Little-endian. Bytes [0, kStablePrefixSize) keep this layout in every major version so that any
// reader can name the version and producer of any engine file.
inline constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'E', 'N', 'G', '\0'};
inline constexpr uint64_t kOffsetMagic = 0;        // u8[8]
inline constexpr uint64_t kOffsetMajor = 8;        // u16
inline constexpr uint64_t kOffsetMinor = 10;       // u16
inline constexpr uint64_t kOffsetHeaderSize = 12;  // u32: where the section table starts
inline constexpr uint64_t kOffsetProducer = 16;    // char[32], NUL padded, informative only
inline constexpr uint64_t kProducerFieldSize = 32;
inline constexpr uint64_t kStablePrefixSize = 48;
// Major version 1 continues with:
inline constexpr uint64_t kOffsetFileSize = 48;      // u64: total bytes
inline constexpr uint64_t kOffsetChecksum = 56;      // u64: see below
inline constexpr uint64_t kOffsetFlags = 64;         // u32: required-feature bits
inline constexpr uint64_t kOffsetSectionCount = 68;  // u32
inline constexpr uint64_t kHeaderSize = 72;          // header_size written by this version
// Required-feature bits. The writer sets one when the engine uses a feature that a reader written
// before it would ignore and so misread; such a reader refuses the file instead.
// Bit 0: a FusedAttention layer reads packed QKV in the memory order its attribute qkv_layout
// gives (other than the default [B, S, 3, H, D]); readers before kiln 0.1.0's qkv_layout would
// take it as [B, S, 3, H, D].
inline constexpr uint32_t kFlagAttentionQkvLayout = 1u << 0;
// Flag bits this reader understands. A set bit outside this mask means the engine needs a feature
// this reader lacks: kIncompatible.
inline constexpr uint32_t kKnownFlags = kFlagAttentionQkvLayout;

// Checksum: seed = XXH64(bytes [0, kOffsetChecksum), seed 0);
//           checksum = XXH64(bytes [kOffsetChecksum + 8, file_size), seed).
// So it covers every byte of the file except the checksum field itself.

// ---- section table ------------------------------------------------------------------------------
// At header_size: section_count entries of {id u32, reserved u32 (0), offset u64, size u64}.
inline constexpr uint64_t kSectionEntrySize = 24;
// Sections start at multiples of 8 bytes (the weights section at kWeightAlignment) and do not
// overlap each other or the header/table.
inline constexpr uint64_t kSectionAlignment = 8;

enum class SectionId : uint32_t {
  kInfo = 1,        // message: producer, target, precision                     (required)
  kTensors = 2,     // message: list of tensor descriptors                       (required)
  kBindings = 3,    // message: input and output bindings                        (required)
  kLayers = 4,      // message: list of layers                                   (required)
  kMemoryPlan = 5,  // message: the activation arena plan                        (required)
  kPlugins = 6,     // message: list of plugin references                        (optional)
  kMetadata = 7,    // raw UTF-8 JSON text                                       (optional, "{}")
  kWeights = 8,     // raw weights blob, kWeightAlignment aligned                (optional, empty)
  kKernels = 9,     // message: generated CUDA modules; since 1.1, cuda only     (optional, none)
};
std::string_view section_name(uint32_t id);  // "info", ..., "unknown"

// ---- fields -------------------------------------------------------------------------------------
// A message is a sequence of fields filling its byte range exactly. A field is
//   tag u16 | wire u16 | length u32 | payload[length]
// with no padding. The length lets a reader skip a field it does not know.
enum class Wire : uint16_t {
  kInt = 1,      // payload: 8 bytes, int64 (uint64, enums and bools are stored as int64 too)
  kF32 = 2,      // payload: 4 bytes, IEEE-754 float
  kBytes = 3,    // payload: raw bytes (strings are UTF-8, not NUL terminated)
  kMessage = 4,  // payload: a nested message
  kInts = 5,     // payload: packed int64 array (length a multiple of 8)
  kFloats = 6,   // payload: packed float array (length a multiple of 4)
  kList = 7,     // payload: count u32, then count items of {length u32, bytes[length]}
};
std::string_view wire_name(Wire wire);
inline constexpr uint64_t kFieldHeaderSize = 8;

struct Field {
  uint16_t tag;
  Wire wire;
  std::string_view name;
};

// The highest tag any message uses (the reader tracks fields seen in a 64-bit mask).
inline constexpr uint16_t kMaxKnownTag = 63;
// Shapes of more dimensions than this are rejected.
inline constexpr uint64_t kMaxRank = 16;

namespace info {  // SectionId::kInfo
inline constexpr Field kProducer{1, Wire::kBytes, "producer"};
inline constexpr Field kBackend{2, Wire::kBytes, "target.backend"};
inline constexpr Field kSmArch{3, Wire::kInt, "target.sm_arch"};
inline constexpr Field kDeviceName{4, Wire::kBytes, "target.device_name"};
inline constexpr Field kPrecision{5, Wire::kInt, "precision"};  // DType value
}  // namespace info

namespace tensors {                                          // SectionId::kTensors
inline constexpr Field kTensors{1, Wire::kList, "tensors"};  // items: tensor messages
}

namespace tensor {
inline constexpr Field kName{1, Wire::kBytes, "name"};
inline constexpr Field kDType{2, Wire::kInt, "dtype"};  // required
inline constexpr Field kShape{3, Wire::kInts, "shape"};
inline constexpr Field kKind{4, Wire::kInt, "kind"};  // TensorKind value, required
inline constexpr Field kWeightOffset{5, Wire::kInt, "weight_offset"};
inline constexpr Field kWeightSize{6, Wire::kInt, "weight_size"};
}  // namespace tensor

namespace bindings {                                         // SectionId::kBindings
inline constexpr Field kInputs{1, Wire::kList, "inputs"};    // items: binding messages
inline constexpr Field kOutputs{2, Wire::kList, "outputs"};  // items: binding messages
}  // namespace bindings

namespace binding {
inline constexpr Field kName{1, Wire::kBytes, "name"};
inline constexpr Field kTensor{2, Wire::kInt, "tensor"};   // required
inline constexpr Field kRanges{3, Wire::kInts, "ranges"};  // (min, opt, max) per dimension
}  // namespace binding

namespace layers {                                         // SectionId::kLayers
inline constexpr Field kLayers{1, Wire::kList, "layers"};  // items: layer messages
}

namespace layer {
inline constexpr Field kName{1, Wire::kBytes, "name"};
inline constexpr Field kOp{2, Wire::kBytes, "op"};  // required
inline constexpr Field kInputs{3, Wire::kInts, "inputs"};
inline constexpr Field kOutputs{4, Wire::kInts, "outputs"};
inline constexpr Field kAttributes{5, Wire::kList, "attributes"};  // items: attribute messages
}  // namespace layer

// An attribute: name and kind are required, plus exactly the one value field the kind names.
namespace attribute {
inline constexpr Field kName{1, Wire::kBytes, "name"};
inline constexpr Field kKind{2, Wire::kInt, "kind"};  // Attribute::Kind value
inline constexpr Field kInt{3, Wire::kInt, "int"};
inline constexpr Field kFloat{4, Wire::kF32, "float"};
inline constexpr Field kString{5, Wire::kBytes, "string"};
inline constexpr Field kInts{6, Wire::kInts, "ints"};
inline constexpr Field kFloats{7, Wire::kFloats, "floats"};
inline constexpr Field kStrings{8, Wire::kList, "strings"};   // items: raw UTF-8 strings
inline constexpr Field kTensor{9, Wire::kMessage, "tensor"};  // an attribute_tensor message
}  // namespace attribute

namespace attribute_tensor {
inline constexpr Field kDType{1, Wire::kInt, "dtype"};   // required
inline constexpr Field kShape{2, Wire::kInts, "shape"};  // static
inline constexpr Field kData{3, Wire::kBytes, "data"};   // numel * dtype size bytes
}  // namespace attribute_tensor

namespace memory_plan {  // SectionId::kMemoryPlan
inline constexpr Field kArenaSize{1, Wire::kInt, "arena_size"};
inline constexpr Field kAlignment{2, Wire::kInt, "alignment"};
inline constexpr Field kIsStatic{3, Wire::kInt, "is_static"};   // 0 or 1
inline constexpr Field kOffsets{4, Wire::kInts, "offsets"};     // uint64 as int64; one per tensor
inline constexpr Field kFirstUse{5, Wire::kInts, "first_use"};  // one per tensor
inline constexpr Field kLastUse{6, Wire::kInts, "last_use"};    // one per tensor
}  // namespace memory_plan

namespace plugins {                                          // SectionId::kPlugins
inline constexpr Field kPlugins{1, Wire::kList, "plugins"};  // items: plugin messages
}

namespace plugin {
inline constexpr Field kNamespace{1, Wire::kBytes, "namespace"};
inline constexpr Field kName{2, Wire::kBytes, "name"};  // required
inline constexpr Field kVersion{3, Wire::kBytes, "version"};
inline constexpr Field kFields{4, Wire::kList, "fields"};  // items: attribute messages
inline constexpr Field kLibrary{5, Wire::kBytes, "library"};  // the file that provided it at build time
}  // namespace plugin

namespace kernels {                                          // SectionId::kKernels (format 1.1)
inline constexpr Field kModules{1, Wire::kList, "modules"};  // items: kernel_module messages
}

namespace kernel_module {
inline constexpr Field kName{1, Wire::kBytes, "name"};      // required, non-empty, unique
inline constexpr Field kSmArch{2, Wire::kInt, "sm_arch"};   // required, the target's
inline constexpr Field kCompiler{3, Wire::kBytes, "compiler"};
inline constexpr Field kSource{4, Wire::kBytes, "source"};
inline constexpr Field kCubin{5, Wire::kBytes, "cubin"};    // required, an ELF image
}  // namespace kernel_module

}  // namespace kiln::format::schema
