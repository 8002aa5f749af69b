#include "codegen/kernel_cache.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <thread>

#include "base/error.hpp"
#include "format/checksum.hpp"
#include "format/cubin_image.hpp"
#include "format/wire_format.hpp"

namespace kiln::codegen {
namespace {

namespace fs = std::filesystem;

// Entry file layout (little endian):
//   magic "KILNKC01" | u32 n, key[n] | u32 n, compiler[n] | u32 n, log[n] | u64 n, cubin[n] |
//   u64 XXH64 of every byte before it
constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'K', 'C', '0', '1'};
// Cubins of generated kernels are kilobytes; an entry claiming more is not one of ours.
constexpr uint64_t kMaxEntryBytes = uint64_t{256} << 20;
constexpr const char* kKeyVersion = "kiln-kernel-cache-key 1";

void put_u32(std::vector<uint8_t>& out, uint32_t value) {
  const size_t at = out.size();
  out.resize(at + 4);
  format::store_le<uint32_t>(out.data() + at, value);
}

void put_u64(std::vector<uint8_t>& out, uint64_t value) {
  const size_t at = out.size();
  out.resize(at + 8);
  format::store_le<uint64_t>(out.data() + at, value);
}

void put_text(std::vector<uint8_t>& out, std::string_view text) {
  put_u32(out, static_cast<uint32_t>(text.size()));
  out.insert(out.end(), text.begin(), text.end());
}

// Bounds-checked reading of an entry; every method returns false once the bytes run out.
class EntryReader {
 public:
  explicit EntryReader(std::span<const uint8_t> bytes) : rest_(bytes) {}

  bool text(std::string& out) {
    uint32_t size = 0;
    if (!u32(size) || size > rest_.size()) return false;
    out.assign(reinterpret_cast<const char*>(rest_.data()), size);
    rest_ = rest_.subspan(size);
    return true;
  }
  bool blob(std::vector<uint8_t>& out) {
    uint64_t size = 0;
    if (!u64(size) || size > rest_.size()) return false;
    out.assign(rest_.begin(), rest_.begin() + static_cast<std::ptrdiff_t>(size));
    rest_ = rest_.subspan(size);
    return true;
  }
  bool at_end() const { return rest_.empty(); }

 private:
  bool u32(uint32_t& out) {
    if (rest_.size() < 4) return false;
    out = format::load_le<uint32_t>(rest_.data());
    rest_ = rest_.subspan(4);
    return true;
  }
  bool u64(uint64_t& out) {
    if (rest_.size() < 8) return false;
    out = format::load_le<uint64_t>(rest_.data());
    rest_ = rest_.subspan(8);
    return true;
  }

  std::span<const uint8_t> rest_;
};

std::optional<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const std::streamoff size = in.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > kMaxEntryBytes) return std::nullopt;
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) return std::nullopt;
  return bytes;
}

std::optional<CompiledModule> decode_entry(std::span<const uint8_t> bytes,
                                           const std::string& key) {
  if (bytes.size() < sizeof(kMagic) + 8 ||
      !std::equal(std::begin(kMagic), std::end(kMagic), bytes.begin())) {
    return std::nullopt;
  }
  const std::span<const uint8_t> body = bytes.first(bytes.size() - 8);
  if (format::xxh64(body) != format::load_le<uint64_t>(bytes.data() + body.size())) {
    return std::nullopt;
  }
  EntryReader reader(body.subspan(sizeof(kMagic)));
  std::string stored_key;
  CompiledModule module;
  if (!reader.text(stored_key) || !reader.text(module.compiler) || !reader.text(module.log) ||
      !reader.blob(module.cubin) || !reader.at_end()) {
    return std::nullopt;
  }
  // The structure check the engine reader applies, so a cached cubin never fails it later.
  if (stored_key != key || !format::cubin_image_problem(module.cubin).empty()) return std::nullopt;
  return module;
}

std::vector<uint8_t> encode_entry(const std::string& key, const CompiledModule& module) {
  std::vector<uint8_t> out(std::begin(kMagic), std::end(kMagic));
  put_text(out, key);
  put_text(out, module.compiler);
  put_text(out, module.log);
  put_u64(out, module.cubin.size());
  out.insert(out.end(), module.cubin.begin(), module.cubin.end());
  put_u64(out, format::xxh64(out));
  return out;
}

// A name no other writer (thread or process) uses at the same time.
std::string temp_name(const std::string& final_path) {
  static std::atomic<uint64_t> counter{0};
  return detail::concat(final_path, ".tmp.", ::getpid(), ".",
                        std::hash<std::thread::id>{}(std::this_thread::get_id()), ".",
                        counter.fetch_add(1));
}

bool is_hex_key(const std::string& key) {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

void count(int* counter) {
  if (counter != nullptr) std::atomic_ref<int>(*counter).fetch_add(1);
}

}  // namespace

KernelCache::KernelCache(std::string directory) : directory_(std::move(directory)) {}

std::string KernelCache::entry_path(const std::string& key) const {
  if (!enabled()) return {};
  return (fs::path(directory_) / (key + ".kernel")).string();
}

std::optional<CompiledModule> KernelCache::find(const std::string& key) const {
  // Keys name files: only what kernel_cache_key makes (hex) may reach the file system.
  if (!enabled() || !is_hex_key(key)) return std::nullopt;
  try {
    const std::optional<std::vector<uint8_t>> bytes = read_file(entry_path(key));
    if (!bytes) return std::nullopt;
    return decode_entry(*bytes, key);
  } catch (const std::exception&) {
    return std::nullopt;  // e.g. bad_alloc: a cache never fails a build
  }
}

void KernelCache::store(const std::string& key, const CompiledModule& module) const {
  if (!enabled() || !is_hex_key(key)) return;
  try {
    std::error_code ec;
    fs::create_directories(directory_, ec);
    const std::string path = entry_path(key);
    const std::string temp = temp_name(path);
    const std::vector<uint8_t> bytes = encode_entry(key, module);
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      if (!out) return;
      out.write(reinterpret_cast<const char*>(bytes.data()),
                static_cast<std::streamsize>(bytes.size()));
      out.close();
      if (!out) {
        fs::remove(temp, ec);
        return;
      }
    }
    // rename() replaces `path` atomically: readers see the old entry or the new one, whole.
    fs::rename(temp, path, ec);
    if (ec) fs::remove(temp, ec);
  } catch (const std::exception&) {
    // Best effort: a full disk or a read-only cache must not fail the build.
  }
}

std::string kernel_cache_key(const std::string& source, int sm_arch, const std::string& compiler,
                             const std::vector<std::string>& options) {
  std::vector<uint8_t> bytes;
  put_text(bytes, kKeyVersion);
  put_u64(bytes, static_cast<uint64_t>(static_cast<int64_t>(sm_arch)));
  put_text(bytes, compiler);
  put_u32(bytes, static_cast<uint32_t>(options.size()));
  for (const std::string& option : options) put_text(bytes, option);
  put_u64(bytes, source.size());
  bytes.insert(bytes.end(), source.begin(), source.end());
  // 128 bits from two differently seeded XXH64s: a collision would hand a build the wrong cubin.
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx",
                static_cast<unsigned long long>(format::xxh64(bytes, 0)),
                static_cast<unsigned long long>(format::xxh64(bytes, 0x9e3779b97f4a7c15ULL)));
  return hex;
}

std::string default_kernel_cache_dir() {
  const std::string chosen = environment("KILN_KERNEL_CACHE");
  if (!chosen.empty()) return chosen == "off" || chosen == "0" ? std::string() : chosen;
  const std::string xdg = environment("XDG_CACHE_HOME");
  if (!xdg.empty()) return (fs::path(xdg) / "kiln" / "kernels").string();
  const std::string home = environment("HOME");
  if (!home.empty()) return (fs::path(home) / ".cache" / "kiln" / "kernels").string();
  return {};
}

CompiledModule compile_cuda_cached(const KernelCache& cache, std::string_view name,
                                   const std::string& source, int sm_arch,
                                   const std::vector<std::string>& extra_options,
                                   KernelCacheStats* stats) {
  const std::string key = kernel_cache_key(source, sm_arch, nvrtc_version(),
                                           nvrtc_options(sm_arch, extra_options));
  if (std::optional<CompiledModule> hit = cache.find(key)) {
    count(stats ? &stats->hits : nullptr);
    return std::move(*hit);
  }
  CompiledModule module = compile_cuda(name, source, sm_arch, extra_options);
  count(stats ? &stats->misses : nullptr);
  cache.store(key, module);
  return module;
}

}  // namespace kiln::codegen
