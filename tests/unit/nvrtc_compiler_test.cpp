// NVRTC through dlopen: cubins for sm_90 (no GPU needed), compile errors with the log and the
// source line, concurrent compiles, and a clear error when the chosen library is missing.
// Where configure found NVRTC these tests must find it; elsewhere they skip (nvrtc_test_support).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "codegen/nvrtc_compiler.hpp"
#include "codegen/nvrtc_library.hpp"
#include "format/cubin_image.hpp"
#include "kiln/types.hpp"
#include "nvrtc_test_support.hpp"

namespace kiln::codegen {
namespace {

std::string scale_kernel(const std::string& name) {
  return "extern \"C\" __global__ void " + name +
         "(float* x, float a, int n) {\n"
         "  const int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
         "  if (i < n) x[i] = x[i] * a + 1.0f;\n"
         "}\n";
}

void expect_cuda_elf(const CompiledModule& module) {
  ASSERT_GE(module.cubin.size(), 64u);
  EXPECT_EQ(module.cubin[0], 0x7f);
  EXPECT_EQ(module.cubin[1], 'E');
  EXPECT_EQ(module.cubin[2], 'L');
  EXPECT_EQ(module.cubin[3], 'F');
  // e_machine (bytes 18-19, little endian) is EM_CUDA (190).
  EXPECT_EQ(module.cubin[18] | (module.cubin[19] << 8), 190);
  // And it passes the structure check engine files apply to cubins.
  EXPECT_EQ(format::cubin_image_problem(module.cubin), "");
}

TEST(NvrtcCompiler, CompilesAKernelToAnElfCubinForSm90) {
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  const CompiledModule module = compile_cuda("scale_module", scale_kernel("scale"), 90);
  expect_cuda_elf(module);
  EXPECT_EQ(module.compiler, nvrtc_version());
  EXPECT_EQ(module.compiler.rfind("nvrtc 13.", 0), 0u) << module.compiler;
  // The kernel's name is in the ELF's string table.
  const std::string image(module.cubin.begin(), module.cubin.end());
  EXPECT_NE(image.find("scale"), std::string::npos);
}

TEST(NvrtcCompiler, SyntaxErrorIsInternalWithTheLogAndTheLine) {
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  const std::string source =
      "extern \"C\" __global__ void broken(float* x) {\n"
      "  float y = 1.0f;\n"
      "  x[0] = y +* undefined_thing;\n"
      "}\n";
  try {
    compile_cuda("broken_module", source, 90);
    FAIL() << "a syntax error compiled";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInternal) << message;
    EXPECT_NE(message.find("'broken_module'"), std::string::npos) << message;
    EXPECT_NE(message.find("sm_90"), std::string::npos) << message;
    EXPECT_NE(message.find("broken_module(3): error"), std::string::npos) << message;  // the log
    EXPECT_NE(message.find("> 3 |   x[0] = y +* undefined_thing;"), std::string::npos) << message;
    EXPECT_NE(message.find("  2 |   float y = 1.0f;"), std::string::npos) << message;
  }
}

TEST(NvrtcCompiler, RejectsImpossibleArchitectures) {
  try {
    compile_cuda("k", scale_kernel("k"), 9);
    FAIL() << "sm_9 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("sm_arch 9"), std::string::npos) << e.what();
  }
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  try {
    compile_cuda("k", scale_kernel("k"), 11);  // well formed, but no such GPU
    FAIL() << "sm_11 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("--gpu-architecture=sm_11"), std::string::npos)
        << e.what();
  }
}

TEST(NvrtcCompiler, OptionsAreIeeeAndExtraOptionsComeLast) {
  const std::vector<std::string> options = nvrtc_options(90, {"-lineinfo"});
  ASSERT_FALSE(options.empty());
  EXPECT_EQ(options.front(), "--gpu-architecture=sm_90");
  EXPECT_EQ(options.back(), "-lineinfo");
  for (const char* expected :
       {"-std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true"}) {
    EXPECT_NE(std::find(options.begin(), options.end(), expected), options.end()) << expected;
  }
  for (const std::string& option : options) {
    EXPECT_EQ(option.find("fast-math"), std::string::npos) << option;
  }
}

TEST(NvrtcCompiler, AnExtraOptionReplacesTheDefaultOfTheSameName) {
  const std::vector<std::string> options = nvrtc_options(90, {"--prec-div=false"});
  EXPECT_EQ(std::count(options.begin(), options.end(), "--prec-div=true"), 0);
  EXPECT_EQ(std::count(options.begin(), options.end(), "--prec-div=false"), 1);
  EXPECT_EQ(std::count(options.begin(), options.end(), "--prec-sqrt=true"), 1);
  EXPECT_EQ(std::count(options.begin(), options.end(), "--ftz=false"), 1);
}

TEST(NvrtcCompiler, ConcurrentCompilesFromFourThreads) {
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  std::vector<std::future<CompiledModule>> jobs;
  for (int t = 0; t < 4; ++t) {
    jobs.push_back(std::async(std::launch::async, [t] {
      const std::string name = "scale_" + std::to_string(t);
      return compile_cuda(name, scale_kernel(name), 90);
    }));
  }
  for (int t = 0; t < 4; ++t) {
    SCOPED_TRACE("thread " + std::to_string(t));
    const CompiledModule module = jobs[t].get();
    expect_cuda_elf(module);
    const std::string image(module.cubin.begin(), module.cubin.end());
    EXPECT_NE(image.find("scale_" + std::to_string(t)), std::string::npos);
  }
}

TEST(NvrtcLibrary, ChosenLibraryIsTheOnlyCandidate) {
  const char* previous = std::getenv("KILN_NVRTC_LIBRARY");
  const std::string saved = previous ? previous : "";
  setenv("KILN_NVRTC_LIBRARY", "/opt/somewhere/libnvrtc.so.13", 1);
  const std::vector<std::string> chosen = nvrtc_search_paths();
  unsetenv("KILN_NVRTC_LIBRARY");
  const std::vector<std::string> searched = nvrtc_search_paths();
  if (previous) setenv("KILN_NVRTC_LIBRARY", saved.c_str(), 1);
  EXPECT_EQ(chosen, std::vector<std::string>{"/opt/somewhere/libnvrtc.so.13"});
  ASSERT_GE(searched.size(), 2u);
  EXPECT_EQ(searched[0], "libnvrtc.so.13");
  EXPECT_NE(std::find(searched.begin(), searched.end(), "/usr/local/cuda/lib64/libnvrtc.so.13"),
            searched.end());
}

TEST(NvrtcLibrary, LoadNamesEveryPlaceTried) {
  try {
    load_nvrtc({"/nonexistent/a/libnvrtc.so.13", "/nonexistent/b/libnvrtc.so.13"});
    FAIL() << "loaded a library that does not exist";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << message;
    EXPECT_NE(message.find("/nonexistent/a/libnvrtc.so.13"), std::string::npos) << message;
    EXPECT_NE(message.find("/nonexistent/b/libnvrtc.so.13"), std::string::npos) << message;
    EXPECT_NE(message.find("KILN_NVRTC_LIBRARY"), std::string::npos) << message;
  }
  // A library that loads but is not NVRTC.
  try {
    load_nvrtc({"libm.so.6"});
    FAIL() << "libm accepted as NVRTC";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no nvrtcVersion"), std::string::npos) << e.what();
  }
}

// Runs in a fresh process (threadsafe death tests re-execute the binary), so the process-wide
// NVRTC has not been loaded yet and the variable decides.
TEST(NvrtcCompilerDeathTest, MissingChosenLibraryIsUnsupportedNamingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("KILN_NVRTC_LIBRARY", "/nonexistent/kiln-test/libnvrtc.so.13", 1);
        try {
          compile_cuda("k", scale_kernel("k"), 90);
        } catch (const Error& e) {
          std::cerr << e.what() << std::endl;
          std::exit(e.code() == ErrorCode::kUnsupported ? 3 : 4);
        }
        std::exit(5);
      },
      ::testing::ExitedWithCode(3), "/nonexistent/kiln-test/libnvrtc.so.13");
}

}  // namespace
}  // namespace kiln::codegen
