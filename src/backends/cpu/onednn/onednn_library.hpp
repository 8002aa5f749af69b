// The entry point of libkiln_cpu_onednn.so (onednn_conv_library.cpp), which the runtime loads
// lazily (onednn_conv.cpp): the oneDNN convolution's and matmul's calls, as onednn_conv.hpp documents them.
#pragma once

#include <string>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"

namespace kiln::cpu::onednn {

struct LibraryEntry {
  std::string (*describe)();               // onednn_conv.hpp's describe(), when loaded
  bool (*try_run_conv)(KernelContext& ctx);  // onednn_conv.hpp's try_run_conv(), when loaded
  bool (*try_run_matmul)(KernelContext& ctx);  // onednn_conv.hpp's try_run_matmul(), when loaded
  // The OpenMP team oneDNN runs on, for the pools to share (intra_op_threads.hpp); null when the
  // library was built without OpenMP (its oneDNN uses another threading runtime).
  SharedTeamRun run_on_team;
};

}  // namespace kiln::cpu::onednn

// Returns the library's entry, or null when `runtime_version` (the loading runtime's KILN_VERSION)
// is not the library's own. Never throws.
extern "C" const kiln::cpu::onednn::LibraryEntry* kiln_cpu_onednn_entry(const char* runtime_version);
