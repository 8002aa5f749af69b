// Tactics: which algorithm a GEMM or convolution layer runs (a cuBLASLt algorithm, a cuDNN
// algorithm and math type), keyed by the problem it solves (op, dtypes, shapes, attributes, GPU).
//
// The builder times the candidates once on the target GPU while a TacticCache is active on its
// thread, records each layer's winner in the engine (layer attributes kiln_tactic_key and
// kiln_tactic) and can persist the cache in a timing-cache file so rebuilds skip the timing. At
// run time a kernel uses the recorded tactic when its key matches the shapes it runs with.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace kiln {

class TacticCache {
 public:
  // The tactic recorded for `key`, if any.
  std::optional<std::string> find(const std::string& key) const;
  // Records `layer`'s choice (and the key's entry).
  void record(const std::string& layer, const std::string& key, const std::string& tactic);
  // Per layer name: (key, tactic) chosen during the run this cache was active for.
  std::map<std::string, std::pair<std::string, std::string>> layer_choices() const;
  size_t size() const;

  // Timing-cache files: a first line "kiln-timing-cache 1", then "key<TAB>tactic" per line.
  // load() adds the file's entries (a missing file is an empty cache); throws kCorruptFile naming
  // the file and line for anything else it cannot read. save() throws kIoError.
  void load(const std::string& path);
  void save(const std::string& path) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::string> entries_;
  std::map<std::string, std::pair<std::string, std::string>> layers_;
};

// The cache kernels consult and record into on this thread (null when none is active).
TacticCache* active_tactic_cache();

// Makes `cache` the active one on this thread for the scope's lifetime.
class ScopedTacticCache {
 public:
  explicit ScopedTacticCache(TacticCache* cache);
  ~ScopedTacticCache();
  ScopedTacticCache(const ScopedTacticCache&) = delete;
  ScopedTacticCache& operator=(const ScopedTacticCache&) = delete;

 private:
  TacticCache* previous_;
};

}  // namespace kiln
