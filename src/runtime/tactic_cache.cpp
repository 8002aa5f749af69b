#include "runtime/tactic_cache.hpp"

#include <fstream>
#include <sstream>

#include "base/error.hpp"

namespace kiln {
namespace {

constexpr const char* kHeader = "kiln-timing-cache 1";
thread_local TacticCache* active_cache = nullptr;

}  // namespace

std::optional<std::string> TacticCache::find(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void TacticCache::record(const std::string& layer, const std::string& key, const std::string& tactic) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_[key] = tactic;
  layers_[layer] = {key, tactic};
}

std::map<std::string, std::pair<std::string, std::string>> TacticCache::layer_choices() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return layers_;
}

size_t TacticCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

void TacticCache::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return;  // no cache yet
  std::string line;
  if (!std::getline(in, line) || line != kHeader) {
    fail(ErrorCode::kCorruptFile, path, ": not a kiln timing cache (first line '", line, "', expected '", kHeader,
         "')");
  }
  std::map<std::string, std::string> loaded;
  for (size_t number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos || tab == 0 || tab + 1 == line.size()) {
      fail(ErrorCode::kCorruptFile, path, ":", number, ": expected 'key<TAB>tactic'");
    }
    loaded[line.substr(0, tab)] = line.substr(tab + 1);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [key, tactic] : loaded) entries_[key] = std::move(tactic);
}

void TacticCache::save(const std::string& path) const {
  std::ostringstream text;
  text << kHeader << '\n';
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [key, tactic] : entries_) text << key << '\t' << tactic << '\n';
  }
  std::ofstream out(path, std::ios::trunc);
  out << text.str();
  if (!out) fail(ErrorCode::kIoError, path, ": cannot write the timing cache");
}

TacticCache* active_tactic_cache() { return active_cache; }

ScopedTacticCache::ScopedTacticCache(TacticCache* cache) : previous_(active_cache) { active_cache = cache; }

ScopedTacticCache::~ScopedTacticCache() { active_cache = previous_; }

}  // namespace kiln
