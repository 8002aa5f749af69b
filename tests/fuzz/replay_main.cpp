// A main() for the fuzz targets where libFuzzer is absent (gcc builds, KILN_FUZZ=OFF): runs
// LLVMFuzzerTestOneInput once over each file named, or each file inside each directory named, so
// that ctest replays tests/data/fuzz-regressions/ in every build. Arguments starting with '-'
// (libFuzzer flags such as -runs=0) are ignored so both builds take the same command line.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int replay_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return 1;
  }
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int failures = 0;
  size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue;
    const std::filesystem::path path(arg);
    if (std::filesystem::is_directory(path)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& file : files) {
        failures += replay_file(file);
        ++replayed;
      }
    } else {
      failures += replay_file(path);
      ++replayed;
    }
  }
  std::fprintf(stderr, "replay: %zu inputs, %d unreadable\n", replayed, failures);
  return failures == 0 ? 0 : 1;
}
