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
//   kiln_kernel_split_partials INTS  per entry (optional, default 0): floats of workspace per work
//                                    unit and split for an entry that splits the reduced rows of
//                                    a column reduction across blocks; 0 for other entries
//   kiln_kernel_split_rows  INTS     (with split entries) the reduced rows of one unit: a product
//                                    of dims encoded as above; the launcher picks the splits
#pragma once

#include <cstdint>

namespace kiln::ops {

inline constexpr int kGroupKernelMaxTensors = 32;
inline constexpr int kGroupKernelMaxSymbols = 8;

// The fields after `units` came with row-splitting column entries; a kernel compiled before them
// declares a shorter struct and reads only its prefix, so older engines launch unchanged.
struct GroupKernelArgs {
  const void* tensors[kGroupKernelMaxTensors];
  int64_t symbols[kGroupKernelMaxSymbols];
  int64_t units;
  void* workspace;     // split entries: units * splits * split_partials floats
  unsigned* counters;  // split entries: one per unit, 0 between launches (the kernel resets them)
  int64_t splits;      // split entries: slices of the reduced rows (>= 1)
};

inline constexpr const char* kGroupKernelArgsSource =
    "struct KilnArgs { const void* t[32]; long long s[8]; long long units; void* workspace; unsigned* counters; "
    "long long splits; };\n";

}  // namespace kiln::ops
