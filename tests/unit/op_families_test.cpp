// The generated tables of op families (base/family_registration.hpp): each holds exactly the
// families whose registration functions its source folder defines (found here by a scan of our own,
// independent of cmake/generate_family_table.cmake), together they give the whole registry, the
// order they run in changes nothing, and an op registered twice is still an error naming the op
// and the family.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "ops/op_families.hpp"
#if KILN_WITH_CUDA
#include "backends/cuda/cuda_kernel.hpp"
#endif

namespace kiln {
namespace {

namespace fs = std::filesystem;

// family name -> the file defining `register_<family>_<kind>(`, from every file of `folder` with
// one of `extensions`, line comments left out.
std::map<std::string, std::string> families_in_sources(const std::string& folder,
                                                       const std::string& kind,
                                                       const std::vector<std::string>& extensions) {
  const std::regex registration("\\bregister_(\\w+)_" + kind + "\\s*\\(");
  const std::regex line_comment("//[^\\n]*");
  std::map<std::string, std::string> found;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(fs::path(KILN_SOURCE_DIR) / folder)) {
    const std::string extension = entry.path().extension().string();
    if (std::find(extensions.begin(), extensions.end(), extension) == extensions.end()) continue;
    std::ifstream file(entry.path(), std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    const std::string code = std::regex_replace(text.str(), line_comment, "");
    for (std::sregex_iterator it(code.begin(), code.end(), registration), end; it != end; ++it) {
      const std::string source = folder + "/" + entry.path().filename().string();
      EXPECT_TRUE(found.emplace((*it)[1].str(), source).second)
          << "register_" << (*it)[1] << "_" << kind << " appears twice: " << found[(*it)[1].str()]
          << ", " << source;
    }
  }
  return found;
}

template <typename Registry>
std::map<std::string, std::string> families_in_table(std::span<const Family<Registry>> table) {
  std::map<std::string, std::string> listed;
  for (size_t i = 0; i < table.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(table[i - 1].name, table[i].name) << "the table is sorted by name, without repeats";
    }
    EXPECT_NE(table[i].register_into, nullptr) << table[i].name;
    listed.emplace(std::string(table[i].name), std::string(table[i].source));
  }
  return listed;
}

TEST(OpFamilies, EachTableHoldsEveryFamilyDefinedInItsFolder) {
  EXPECT_EQ(families_in_table(ops::op_families()), families_in_sources("src/ops", "ops", {".cpp"}));
  EXPECT_EQ(families_in_table(cpu::cpu_kernel_families()),
            families_in_sources("src/backends/cpu", "kernels", {".cpp"}));
  // Today's families, so that a scan that finds nothing cannot pass.
  EXPECT_GE(ops::op_families().size(), 38u);
  EXPECT_GE(cpu::cpu_kernel_families().size(), 36u);
#if KILN_WITH_CUDA
  // The cuda table comes from src/backends/cuda alone (it is built into libkiln_backend_cuda.so).
  EXPECT_EQ(families_in_table(cuda::cuda_kernel_families()),
            families_in_sources("src/backends/cuda", "kernels", {".cpp", ".cu"}));
  EXPECT_GE(cuda::cuda_kernel_families().size(), 17u);
#endif
}

// Registers each family of `table` into a registry of its own: every family registers something,
// no op is in two families, and together they are `whole` (the process-wide registry's names).
template <typename Registry, typename NamesOf>
void expect_families_partition(std::span<const Family<Registry>> table,
                               const std::vector<std::string>& whole, NamesOf names_of) {
  std::map<std::string, std::string> family_of_op;
  for (const Family<Registry>& family : table) {
    Registry own;
    family.register_into(own);
    const std::vector<std::string> names = names_of(own);
    EXPECT_FALSE(names.empty()) << "family " << family.name << " (" << family.source
                                << ") registers nothing";
    for (const std::string& name : names) {
      const auto [it, first] = family_of_op.emplace(name, std::string(family.name));
      EXPECT_TRUE(first) << name << " is in families " << it->second << " and " << family.name;
    }
  }
  std::vector<std::string> union_of_families;
  for (const auto& [name, family] : family_of_op) union_of_families.push_back(name);
  EXPECT_EQ(union_of_families, whole);
}

TEST(OpFamilies, TogetherTheFamiliesAreTheRegistry) {
  expect_families_partition(ops::op_families(), ops::op_registry().names(),
                            [](const ops::OpRegistry& r) { return r.names(); });
  expect_families_partition(cpu::cpu_kernel_families(), cpu::cpu_kernels().ops(),
                            [](const cpu::CpuKernelRegistry& r) { return r.ops(); });
#if KILN_WITH_CUDA
  expect_families_partition(cuda::cuda_kernel_families(), cuda::cuda_kernels().ops(),
                            [](const cuda::CudaKernelRegistry& r) { return r.ops(); });
#endif
}

template <typename Registry>
std::vector<Family<Registry>> reversed(std::span<const Family<Registry>> table) {
  return std::vector<Family<Registry>>(table.rbegin(), table.rend());
}

TEST(OpFamilies, TheOrderTheyRegisterInChangesNothing) {
  ops::OpRegistry backwards;
  register_families(backwards, std::span<const ops::OpFamily>(reversed(ops::op_families())));
  const ops::OpRegistry& forwards = ops::op_registry();
  ASSERT_EQ(backwards.names(), forwards.names());
  for (const std::string& name : forwards.names()) {
    const ops::OpDef& a = *forwards.find(name);
    const ops::OpDef& b = *backwards.find(name);
    EXPECT_EQ(a.infer, b.infer) << name;
    EXPECT_EQ(a.min_inputs, b.min_inputs) << name;
    EXPECT_EQ(a.max_inputs, b.max_inputs) << name;
    EXPECT_EQ(a.min_outputs, b.min_outputs) << name;
    EXPECT_EQ(a.max_outputs, b.max_outputs) << name;
    EXPECT_EQ(a.value_inputs, b.value_inputs) << name;
    EXPECT_EQ(a.data_dependent_shapes, b.data_dependent_shapes) << name;
  }
  cpu::CpuKernelRegistry cpu_backwards;
  register_families(cpu_backwards,
                    std::span<const cpu::CpuKernelFamily>(reversed(cpu::cpu_kernel_families())));
  ASSERT_EQ(cpu_backwards.ops(), cpu::cpu_kernels().ops());
  for (const std::string& op : cpu_backwards.ops()) {
    EXPECT_EQ(cpu_backwards.find(op)->fn, cpu::cpu_kernels().find(op)->fn) << op;
    EXPECT_EQ(cpu_backwards.find(op)->float_compute, cpu::cpu_kernels().find(op)->float_compute)
        << op;
    EXPECT_EQ(cpu_backwards.find_support(op)->every_tensor.names(),
              cpu::cpu_kernels().find_support(op)->every_tensor.names())
        << op;
  }
}

void register_second_relu_op(ops::OpRegistry& registry) {
  registry.add(ops::OpDef{"Relu", 1, 1, 1, 1, {}, [](ops::InferContext&) {}});
}
void register_second_relu_kernel(cpu::CpuKernelRegistry& registry) {
  registry.add("Relu", cpu::CpuKernel{[](cpu::KernelContext&) {}});
}

// Runs register_families over `families` and returns its error's message ("" when none).
template <typename Registry>
std::string registration_error(const std::vector<Family<Registry>>& families) {
  Registry registry;
  try {
    register_families(registry, std::span<const Family<Registry>>(families));
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInternal);
    return error.what();
  }
  return "";
}

TEST(OpFamilies, AnOpRegisteredTwiceIsAnErrorNamingTheOpAndTheFamily) {
  const ops::OpFamily second_relu{"second_relu", "tests/unit/op_families_test.cpp",
                                  &register_second_relu_op};
  std::vector<ops::OpFamily> families(ops::op_families().begin(), ops::op_families().end());
  EXPECT_EQ(registration_error(families), "");
  // Whichever of the two comes first, the second is refused.
  families.push_back(second_relu);
  EXPECT_EQ(
      registration_error(families),
      "op family 'second_relu' (tests/unit/op_families_test.cpp): op 'Relu' is registered twice");
  families.pop_back();
  families.insert(families.begin(), second_relu);
  EXPECT_EQ(registration_error(families),
            "op family 'elementwise' (src/ops/elementwise_ops.cpp): op 'Relu' is registered twice");
  // The same family twice.
  EXPECT_EQ(
      registration_error(std::vector<ops::OpFamily>{second_relu, second_relu}),
      "op family 'second_relu' (tests/unit/op_families_test.cpp): op 'Relu' is registered twice");

  std::vector<cpu::CpuKernelFamily> kernel_families(cpu::cpu_kernel_families().begin(),
                                                    cpu::cpu_kernel_families().end());
  kernel_families.push_back(
      {"second_relu", "tests/unit/op_families_test.cpp", &register_second_relu_kernel});
  EXPECT_EQ(registration_error(kernel_families),
            "op family 'second_relu' (tests/unit/op_families_test.cpp): the CPU kernel of op "
            "'Relu' is registered "
            "twice");
}

}  // namespace
}  // namespace kiln
