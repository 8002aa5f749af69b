// The on-disk kernel cache: keys, hits and misses, corrupt entries as misses, a disabled cache
// that never writes, concurrent writers, the default directory, and compile_cuda_cached.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "codegen/kernel_cache.hpp"
#include "fake_cubin.hpp"
#include "nvrtc_test_support.hpp"

namespace kiln::codegen {
namespace {

namespace fs = std::filesystem;

// A fresh, empty directory per test, removed afterwards.
class KernelCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("kiln_kernel_cache_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<fs::path> files() const {
    std::vector<fs::path> out;
    if (!fs::exists(dir_)) return out;
    for (const auto& entry : fs::recursive_directory_iterator(dir_)) {
      if (entry.is_regular_file()) out.push_back(entry.path());
    }
    return out;
  }

  fs::path dir_;
};

CompiledModule fake_module(uint8_t fill, size_t size = 300) {
  CompiledModule module;
  module.cubin = kiln::testing::fake_cubin(fill, size);
  module.compiler = "nvrtc 13.0";
  module.log = "warning: something harmless";
  return module;
}

void expect_same(const CompiledModule& a, const CompiledModule& b) {
  EXPECT_EQ(a.cubin, b.cubin);
  EXPECT_EQ(a.compiler, b.compiler);
  EXPECT_EQ(a.log, b.log);
}

// RAII setting of an environment variable (unset when `value` is null).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { saved_ ? setenv(name_, saved_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

TEST(KernelCacheKey, CoversEverythingThatDecidesTheCubin) {
  const std::vector<std::string> options = {"--gpu-architecture=sm_90", "-std=c++17"};
  const std::string key = kernel_cache_key("src", 90, "nvrtc 13.0", options);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos) << key;
  EXPECT_EQ(key, kernel_cache_key("src", 90, "nvrtc 13.0", options));  // deterministic
  EXPECT_NE(key, kernel_cache_key("src ", 90, "nvrtc 13.0", options));
  EXPECT_NE(key, kernel_cache_key("src", 100, "nvrtc 13.0", options));
  EXPECT_NE(key, kernel_cache_key("src", 90, "nvrtc 13.1", options));
  EXPECT_NE(key, kernel_cache_key("src", 90, "nvrtc 13.0", {"--gpu-architecture=sm_90"}));
  // Parts are length-prefixed: moving bytes between them changes the key.
  EXPECT_NE(kernel_cache_key("", 90, "", {"ab"}), kernel_cache_key("", 90, "", {"a", "b"}));
  EXPECT_NE(kernel_cache_key("x", 90, "nvrtc", {}), kernel_cache_key("", 90, "nvrtcx", {}));
}

TEST_F(KernelCacheTest, HitAfterStoreAndMissForOtherKeys) {
  const KernelCache cache(dir_.string());
  const std::string key = kernel_cache_key("a", 90, "nvrtc 13.0", {});
  EXPECT_FALSE(cache.find(key).has_value());
  const CompiledModule module = fake_module(0x11);
  cache.store(key, module);  // creates the directory
  const std::optional<CompiledModule> hit = cache.find(key);
  ASSERT_TRUE(hit.has_value());
  expect_same(*hit, module);
  EXPECT_FALSE(cache.find(kernel_cache_key("a", 80, "nvrtc 13.0", {})).has_value());
  EXPECT_FALSE(cache.find(kernel_cache_key("b", 90, "nvrtc 13.0", {})).has_value());
  // A second store replaces the entry.
  const CompiledModule other = fake_module(0x22, 100);
  cache.store(key, other);
  expect_same(*cache.find(key), other);
  EXPECT_EQ(files().size(), 1u);  // no temp files left behind
}

TEST_F(KernelCacheTest, CorruptEntriesAreMissesAndGetOverwritten) {
  const KernelCache cache(dir_.string());
  const std::string key = kernel_cache_key("a", 90, "nvrtc 13.0", {});
  const CompiledModule module = fake_module(0x33);
  cache.store(key, module);
  const std::string path = cache.entry_path(key);
  std::vector<char> good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(good.size(), 300u);
  auto write = [&](const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  // Every truncation, a flipped byte anywhere, garbage, an empty file.
  for (size_t length = 0; length < good.size(); length += 7) {
    write(std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(length)));
    ASSERT_FALSE(cache.find(key).has_value()) << "prefix " << length;
  }
  for (size_t pos = 0; pos < good.size(); pos += 5) {
    std::vector<char> flipped = good;
    flipped[pos] ^= 0x5a;
    write(flipped);
    ASSERT_FALSE(cache.find(key).has_value()) << "byte " << pos;
  }
  write(std::vector<char>(1000, 'x'));
  EXPECT_FALSE(cache.find(key).has_value());
  // A whole, valid entry of another key copied under this key's name.
  const std::string other_key = kernel_cache_key("b", 90, "nvrtc 13.0", {});
  cache.store(other_key, fake_module(0x44));
  fs::copy_file(cache.entry_path(other_key), path, fs::copy_options::overwrite_existing);
  EXPECT_FALSE(cache.find(key).has_value());
  // A directory where the entry should be.
  fs::remove(path);
  fs::create_directory(path);
  EXPECT_FALSE(cache.find(key).has_value());
  cache.store(key, module);  // cannot replace a directory: ignored, not thrown
  fs::remove(path);
  // Storing again repairs the entry.
  write(std::vector<char>(10, 'y'));
  cache.store(key, module);
  ASSERT_TRUE(cache.find(key).has_value());
  expect_same(*cache.find(key), module);
}

TEST_F(KernelCacheTest, RejectsKeysThatAreNotHexAndCubinsThatAreNotCudaElf) {
  const KernelCache cache(dir_.string());
  cache.store("../escape", fake_module(1));
  cache.store("", fake_module(1));
  EXPECT_TRUE(files().empty());
  EXPECT_FALSE(fs::exists(dir_.parent_path() / "escape.kernel"));
  CompiledModule not_elf = fake_module(2);
  not_elf.cubin[1] = 'X';
  const std::string key = kernel_cache_key("c", 90, "nvrtc 13.0", {});
  cache.store(key, not_elf);
  EXPECT_FALSE(cache.find(key).has_value());
}

TEST_F(KernelCacheTest, DisabledCacheNeverWrites) {
  const ScopedEnv xdg("XDG_CACHE_HOME", dir_.c_str());
  const ScopedEnv home("HOME", dir_.c_str());
  for (const char* off : {"off", "0"}) {
    const ScopedEnv disabled("KILN_KERNEL_CACHE", off);
    EXPECT_EQ(default_kernel_cache_dir(), "") << off;
  }
  const KernelCache cache("");
  EXPECT_FALSE(cache.enabled());
  EXPECT_EQ(cache.entry_path("00"), "");
  const std::string key = kernel_cache_key("a", 90, "nvrtc 13.0", {});
  cache.store(key, fake_module(5));
  EXPECT_FALSE(cache.find(key).has_value());
  EXPECT_TRUE(files().empty());
  EXPECT_FALSE(fs::exists(fs::current_path() / (key + ".kernel")));
}

TEST_F(KernelCacheTest, ConcurrentStoresOfOneKeyLeaveAValidFile) {
  const KernelCache cache(dir_.string());
  const std::string key = kernel_cache_key("shared", 90, "nvrtc 13.0", {});
  const CompiledModule module = fake_module(0x5c, 64 * 1024);
  std::vector<std::thread> threads;
  std::vector<int> bad_reads(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        cache.store(key, module);
        // This thread's entry is in place, so a reader racing the other writers must see a
        // whole entry: a miss here would be a torn (half written) file.
        const std::optional<CompiledModule> seen = cache.find(key);
        if (!seen || seen->cubin != module.cubin) ++bad_reads[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad_reads[t], 0) << "thread " << t;
  const std::optional<CompiledModule> hit = cache.find(key);
  ASSERT_TRUE(hit.has_value());
  expect_same(*hit, module);
  EXPECT_EQ(files().size(), 1u);  // every temp file was renamed into place
}

TEST_F(KernelCacheTest, StoreIntoAnUnwritablePlaceIsIgnored) {
  fs::create_directories(dir_);
  { std::ofstream(dir_ / "a_file") << "not a directory"; }
  const KernelCache cache((dir_ / "a_file" / "cache").string());
  const std::string key = kernel_cache_key("a", 90, "nvrtc 13.0", {});
  EXPECT_NO_THROW(cache.store(key, fake_module(7)));
  EXPECT_FALSE(cache.find(key).has_value());
}

TEST(KernelCacheDefaultDir, EnvironmentOrder) {
  {
    const ScopedEnv chosen("KILN_KERNEL_CACHE", "/tmp/chosen");
    const ScopedEnv xdg("XDG_CACHE_HOME", "/tmp/xdg");
    EXPECT_EQ(default_kernel_cache_dir(), "/tmp/chosen");
  }
  {
    const ScopedEnv chosen("KILN_KERNEL_CACHE", "");  // empty: as if unset
    const ScopedEnv xdg("XDG_CACHE_HOME", "/tmp/xdg");
    EXPECT_EQ(default_kernel_cache_dir(), "/tmp/xdg/kiln/kernels");
  }
  {
    const ScopedEnv chosen("KILN_KERNEL_CACHE", nullptr);
    const ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
    const ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_kernel_cache_dir(), "/home/someone/.cache/kiln/kernels");
    const ScopedEnv no_home("HOME", nullptr);
    EXPECT_EQ(default_kernel_cache_dir(), "");
  }
}

TEST_F(KernelCacheTest, CompileCudaCachedCompilesOnceThenHits) {
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  const KernelCache cache(dir_.string());
  const std::string source = "extern \"C\" __global__ void twice(float* x) { x[0] *= 2.0f; }\n";
  KernelCacheStats stats;
  const CompiledModule first = compile_cuda_cached(cache, "twice", source, 90, {}, &stats);
  EXPECT_EQ(stats.misses, 1);
  EXPECT_EQ(stats.hits, 0);
  const CompiledModule second = compile_cuda_cached(cache, "twice", source, 90, {}, &stats);
  EXPECT_EQ(stats.misses, 1);
  EXPECT_EQ(stats.hits, 1);
  expect_same(first, second);
  EXPECT_EQ(first.compiler, nvrtc_version());
  // The entry is keyed by the full option list: another architecture or option is a miss.
  compile_cuda_cached(cache, "twice", source, 80, {}, &stats);
  compile_cuda_cached(cache, "twice", source, 90, {"-lineinfo"}, &stats);
  EXPECT_EQ(stats.misses, 3);
  EXPECT_EQ(files().size(), 3u);
  // A disabled cache compiles every time.
  KernelCacheStats disabled_stats;
  compile_cuda_cached(KernelCache(""), "twice", source, 90, {}, &disabled_stats);
  compile_cuda_cached(KernelCache(""), "twice", source, 90, {}, &disabled_stats);
  EXPECT_EQ(disabled_stats.misses, 2);
  EXPECT_EQ(disabled_stats.hits, 0);
}

}  // namespace
}  // namespace kiln::codegen
