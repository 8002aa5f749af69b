// The timing cache: entries and per-layer choices, the file round trip, a missing file, and
// clear errors for files that are not timing caches.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.hpp"
#include "runtime/tactic_cache.hpp"

namespace kiln {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("kiln_tactic_cache_" + name)).string();
}

TEST(TacticCache, RecordsEntriesAndLayerChoices) {
  TacticCache cache;
  EXPECT_FALSE(cache.find("gemm a").has_value());
  cache.record("fc1", "gemm a", "lt:01");
  cache.record("fc2", "gemm a", "lt:02");  // same problem, later choice wins
  cache.record("conv", "conv b", "cudnn:algo=1,math=1");
  EXPECT_EQ(cache.find("gemm a"), "lt:02");
  EXPECT_EQ(cache.size(), 2u);
  const auto layers = cache.layer_choices();
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers.at("fc1").second, "lt:01");
  EXPECT_EQ(layers.at("conv").first, "conv b");
}

TEST(TacticCache, FileRoundTripAndMissingFile) {
  const std::string path = temp_path("round_trip");
  std::filesystem::remove(path);
  TacticCache empty;
  empty.load(path);  // a missing file is an empty cache
  EXPECT_EQ(empty.size(), 0u);
  TacticCache cache;
  cache.record("l", "gemm f16 m1 n2 k3 sm90 NVIDIA H200", "lt:00ff");
  cache.record("c", "conv f16 x[1, 3, 8, 8]", "cudnn:algo=6,math=1");
  cache.save(path);
  TacticCache loaded;
  loaded.load(path);
  EXPECT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded.find("gemm f16 m1 n2 k3 sm90 NVIDIA H200"), "lt:00ff");
  EXPECT_EQ(loaded.find("conv f16 x[1, 3, 8, 8]"), "cudnn:algo=6,math=1");
  EXPECT_TRUE(loaded.layer_choices().empty());  // choices belong to a run, not to the file
  std::filesystem::remove(path);
}

TEST(TacticCache, ScopedCacheIsActiveOnThisThreadOnly) {
  EXPECT_EQ(active_tactic_cache(), nullptr);
  TacticCache outer, inner;
  {
    ScopedTacticCache a(&outer);
    EXPECT_EQ(active_tactic_cache(), &outer);
    {
      ScopedTacticCache b(&inner);
      EXPECT_EQ(active_tactic_cache(), &inner);
    }
    EXPECT_EQ(active_tactic_cache(), &outer);
  }
  EXPECT_EQ(active_tactic_cache(), nullptr);
}

TEST(TacticCache, RejectsFilesThatAreNotTimingCaches) {
  const std::string path = temp_path("corrupt");
  const auto expect_corrupt = [&](const std::string& text, const std::string& fragment) {
    std::ofstream(path, std::ios::trunc) << text;
    TacticCache cache;
    try {
      cache.load(path);
      ADD_FAILURE() << "expected an error containing '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expect_corrupt("{\"json\": true}\n", "not a kiln timing cache");
  expect_corrupt("kiln-timing-cache 1\ngood\tlt:1\nno tab here\n", ":3: expected 'key<TAB>tactic'");
  std::filesystem::remove(path);
}

TEST(TacticCache, UnwritablePathIsAnIoErrorNamingIt) {
  TacticCache cache;
  cache.record("l", "gemm k", "lt:00");
  const std::string directory = std::filesystem::temp_directory_path().string();  // a directory, not a file
  try {
    cache.save(directory);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIoError);
    EXPECT_NE(std::string(e.what()).find(directory), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln
