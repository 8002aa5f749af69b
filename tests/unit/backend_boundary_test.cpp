// The runtime knows backends only through src/backends/backend.hpp and the registry: no file
// under src/runtime includes a CUDA header or a CUDA backend header or tests KILN_WITH_CUDA; the
// CUDA backend includes no private runtime header (but the tactic cache); among the shared
// backend files only the registration list (builtin_backends.cpp) tests KILN_WITH_CUDA; nothing
// outside src/backends/cuda reaches it or CUDA directly. Scans the source tree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace kiln {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = KILN_SOURCE_DIR;

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The C++/CUDA sources directly in `dir` (recursively when `recursive`).
std::vector<fs::path> sources_in(const fs::path& dir, bool recursive) {
  std::vector<fs::path> files;
  auto keep = [&](const fs::directory_entry& entry) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".cpp" || ext == ".hpp" || ext == ".h" || ext == ".cu" || ext == ".cuh")) {
      files.push_back(entry.path());
    }
  };
  if (recursive) {
    for (const auto& entry : fs::recursive_directory_iterator(dir)) keep(entry);
  } else {
    for (const auto& entry : fs::directory_iterator(dir)) keep(entry);
  }
  return files;
}

// "path:line: text" for each line of the files matching `pattern`.
std::vector<std::string> lines_matching(const std::vector<fs::path>& files, const std::regex& pattern) {
  std::vector<std::string> hits;
  for (const fs::path& file : files) {
    std::istringstream text(read_text(file));
    std::string line;
    for (int number = 1; std::getline(text, line); ++number) {
      if (std::regex_search(line, pattern)) {
        hits.push_back(fs::relative(file, kSource).string() + ":" + std::to_string(number) + ": " + line);
      }
    }
  }
  return hits;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += "\n  " + line;
  return text;
}

const std::regex kTestsCudaBuild(R"(KILN_WITH_CUDA)");
// CUDA toolkit headers (cuda*.h, cublas*, cudnn*, nvrtc*) and the CUDA backend's own headers.
const std::regex kIncludesCuda(R"(#\s*include\s*[<"](cuda|cublas|cudnn|nvrtc|backends/cuda/)[^>"]*[>"])");
// Private runtime headers. runtime/tactic_cache.hpp is the exception: the tactic cache the
// builder fills and GEMM/convolution kernels read, not the runtime's engine or context state.
const std::regex kIncludesRuntime(R"(#\s*include\s*"runtime/(?!tactic_cache\.hpp"))");

TEST(BackendBoundary, TheScanSeesTheTree) {
  // A moved tree would make every check below pass vacuously.
  ASSERT_TRUE(fs::exists(kSource / "src/runtime/engine.cpp"));
  ASSERT_TRUE(fs::exists(kSource / "src/backends/cuda/cuda_executor.cpp"));
  EXPECT_FALSE(lines_matching({kSource / "src/backends/builtin_backends.cpp"}, kTestsCudaBuild).empty());
  EXPECT_FALSE(lines_matching({kSource / "src/backends/cuda/cuda_backend.cpp"}, kIncludesCuda).empty());
  EXPECT_TRUE(std::regex_search(std::string("#include \"runtime/context_state.hpp\""), kIncludesRuntime));
  EXPECT_FALSE(std::regex_search(std::string("#include \"runtime/tactic_cache.hpp\""), kIncludesRuntime));
  EXPECT_TRUE(std::regex_search(std::string("#include <cuda_runtime_api.h>"), kIncludesCuda));
  EXPECT_TRUE(std::regex_search(std::string("#include \"backends/cuda/cuda_device.hpp\""), kIncludesCuda));
}

TEST(BackendBoundary, TheRuntimeHasNoCudaIncludesAndNoCudaBuildTests) {
  const std::vector<fs::path> runtime = sources_in(kSource / "src/runtime", true);
  ASSERT_FALSE(runtime.empty());
  const std::vector<std::string> includes = lines_matching(runtime, kIncludesCuda);
  EXPECT_TRUE(includes.empty()) << "src/runtime reaches the CUDA backend or toolkit directly; go through "
                                   "src/backends/backend.hpp:"
                                << joined(includes);
  const std::vector<std::string> tests = lines_matching(runtime, kTestsCudaBuild);
  EXPECT_TRUE(tests.empty()) << "src/runtime tests KILN_WITH_CUDA; ask the backend registry instead:" << joined(tests);
}

// The cuda backend is a library of its own (libkiln_backend_cuda.so) that the runtime loads on the
// first cuda engine; the runtime, builder, CLI, torch integration and plugin registry link none of
// it, so none of them may include its headers or CUDA's, or test the CUDA build (but the registry's
// list, builtin_backends.cpp): they reach it through src/backends/backend.hpp.
TEST(BackendBoundary, NothingOutsideTheCudaBackendReachesItOrCudaDirectly) {
  std::vector<fs::path> outside;
  for (const fs::path& file : sources_in(kSource / "src", true)) {
    const std::string relative = fs::relative(file, kSource).generic_string();
    if (!relative.starts_with("src/backends/cuda/") && relative != "src/backends/builtin_backends.cpp") {
      outside.push_back(file);
    }
  }
  ASSERT_GT(outside.size(), 100u);
  const std::vector<std::string> includes = lines_matching(outside, kIncludesCuda);
  EXPECT_TRUE(includes.empty()) << "code outside src/backends/cuda includes the cuda backend's or CUDA's headers; "
                                   "go through src/backends/backend.hpp (the runtime loads the cuda backend "
                                   "only for cuda engines):"
                                << joined(includes);
  const std::vector<std::string> tests = lines_matching(outside, kTestsCudaBuild);
  EXPECT_TRUE(tests.empty()) << "code outside src/backends/cuda tests KILN_WITH_CUDA; ask the backend registry:"
                             << joined(tests);
}

TEST(BackendBoundary, TheCudaBackendIncludesNoRuntimeHeader) {
  const std::vector<std::string> includes = lines_matching(sources_in(kSource / "src/backends/cuda", true), kIncludesRuntime);
  EXPECT_TRUE(includes.empty()) << "the CUDA backend includes private runtime headers; give it what it needs "
                                   "through src/backends/backend.hpp:"
                                << joined(includes);
}

TEST(BackendBoundary, OnlyTheRegistrationListTestsTheCudaBuildAmongTheSharedBackendFiles) {
  std::vector<fs::path> shared;
  for (const fs::path& file : sources_in(kSource / "src/backends", false)) {
    if (file.filename() != "builtin_backends.cpp") shared.push_back(file);
  }
  ASSERT_FALSE(shared.empty());
  const std::vector<std::string> tests = lines_matching(shared, kTestsCudaBuild);
  EXPECT_TRUE(tests.empty()) << joined(tests);
}

}  // namespace
}  // namespace kiln
