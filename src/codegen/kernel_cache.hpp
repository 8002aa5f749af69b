// On-disk cache of compiled kernel modules, so that rebuilding an engine (or building another with
// the same fusion groups) does not run NVRTC again. Like the timing cache, but for cubins, and
// keyed by everything that decides the cubin. Safe to share between threads and processes.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codegen/nvrtc_compiler.hpp"

namespace kiln::codegen {

// Directory cache of compiled modules keyed by a hash of (source, sm_arch, compiler version,
// options). An empty directory string disables it. Files are written atomically (temp file +
// rename) so concurrent builds never read half a file; an unreadable or corrupt entry is treated
// as a miss (and overwritten), never an error. Entries are never evicted.
class KernelCache {
 public:
  explicit KernelCache(std::string directory);
  const std::string& directory() const { return directory_; }
  bool enabled() const { return !directory_.empty(); }

  // The module stored under `key`, or nullopt: disabled, no entry, or an entry that fails any
  // check (format, checksum, stored key, the cubin's ELF structure). Never throws kiln::Error.
  std::optional<CompiledModule> find(const std::string& key) const;
  // Writes `module` under `key` (creating the directory). Best effort: failures are ignored.
  void store(const std::string& key, const CompiledModule& module) const;

  // The entry file of `key` (empty when disabled); for tests and diagnostics.
  std::string entry_path(const std::string& key) const;

 private:
  std::string directory_;
};

// Hex key (32 characters) of everything that decides the cubin. Deterministic across processes
// and machines; each part is length-prefixed, so no two different inputs share their bytes.
std::string kernel_cache_key(const std::string& source, int sm_arch, const std::string& compiler,
                             const std::vector<std::string>& options);

// $KILN_KERNEL_CACHE if set and not empty ("off" or "0" -> "" = disabled), else
// $XDG_CACHE_HOME/kiln/kernels, else $HOME/.cache/kiln/kernels, else "" (no home: disabled).
std::string default_kernel_cache_dir();

// Hits and misses of compile_cuda_cached. Increments are atomic (std::atomic_ref), so threads may
// share one; read it after they are done.
struct KernelCacheStats {
  int hits = 0;
  int misses = 0;
};

// compile_cuda through the cache: the key covers nvrtc_version() and the full
// nvrtc_options(sm_arch, extra_options); a miss compiles and stores. Counts hits and misses in
// `stats` when given. Throws what compile_cuda throws (NVRTC is needed even for a hit, to know
// its version).
CompiledModule compile_cuda_cached(const KernelCache& cache, std::string_view name,
                                   const std::string& source, int sm_arch,
                                   const std::vector<std::string>& extra_options = {},
                                   KernelCacheStats* stats = nullptr);

}  // namespace kiln::codegen
