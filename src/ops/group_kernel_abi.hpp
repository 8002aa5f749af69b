// The contract between kernels generated for FusedGroup layers (codegen/, builder side) and the
// CUDA backend that launches them (backends/cuda/fused_group_kernels.cpp, runtime side).
//
// Every generated kernel takes one parameter, GroupKernelArgs, by value: the layer's tensors
// (inputs, then outputs), the run-time values of its symbols (dims the kernel was not
// specialised to) and the number of work units of the launch. The generator writes the same
// struct in CUDA C (kGroupKernelArgsSource).
//
// Layer attributes the generator writes and the launcher reads:
//   kiln_kernel             STRING   the module (engine kernels section) holding the entries
//   kiln_kernel_symbols     INTS     pairs (tensor, axis): symbol s is dim `axis` of layer tensor
//                                    `tensor` (inputs first, then outputs)
//   kiln_kernel_shapes      INTS     per layer tensor: its rank, then each dim as >= 0 (static),
//                                    -1 - s (symbol s) or -1 (an unread input's dynamic dim)
//   kiln_kernel_space       INTS     the iteration space, dims encoded as above (no rank prefix)
//   kiln_kernel_unit        INTS     the elements of one work unit: a product of dims encoded as
//                                    above; units = numel(space) / numel(unit) * multiplier
//   kiln_kernel_multiplier  INT      (default 1)
//   kiln_kernel_entries     STRINGS  the module's entry points for this layer; they differ only in
//                                    block shape, so any may run (a tactic picks one)
//   kiln_kernel_blocks      INTS     per entry: threads per block
//   kiln_kernel_per_block   INTS     per entry: work units one block handles per grid step
//   kiln_kernel_index64     INTS     per entry: 1 when it indexes with 64 bits (else the space
//                                    must hold fewer than 2^31 elements)
#pragma once

#include <cstdint>

namespace kiln::ops {

inline constexpr int kGroupKernelMaxTensors = 32;
inline constexpr int kGroupKernelMaxSymbols = 8;

struct GroupKernelArgs {
  const void* tensors[kGroupKernelMaxTensors];
  int64_t symbols[kGroupKernelMaxSymbols];
  int64_t units;
};

inline constexpr const char* kGroupKernelArgsSource =
    "struct KilnArgs { const void* t[32]; long long s[8]; long long units; };\n";

}  // namespace kiln::ops
