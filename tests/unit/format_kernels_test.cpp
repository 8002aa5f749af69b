// Format 1.1's `kernels` section: generated CUDA modules survive a round trip, every rule of the
// verifier has a clear message, mutated sections give kiln::Error, and format 1.0 files (the
// committed fixture among them) keep loading.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "format/cubin_image.hpp"
#include "format/engine_io.hpp"
#include "format/engine_model.hpp"
#include "format/engine_schema.hpp"
#include "format/wire_format.hpp"
#include "format_test_support.hpp"

namespace kiln::format {
namespace {

using namespace format_testing;

bool has_section(const Bytes& file, s::SectionId id) {
  for (const SectionEntry& e : sections_of(file)) {
    if (e.id == static_cast<uint32_t>(id)) return true;
  }
  return false;
}

void write_module(WireWriter& w, const KernelModule& module) {
  w.string_field(s::kernel_module::kName, module.name);
  w.int_field(s::kernel_module::kSmArch, module.sm_arch);
  w.string_field(s::kernel_module::kCompiler, module.compiler);
  w.string_field(s::kernel_module::kSource, module.source);
  w.bytes_field(s::kernel_module::kCubin, module.cubin);
}

// The full model's file with its kernels section replaced by `write_section`'s bytes.
Bytes with_kernels_section(const std::function<void(WireWriter&)>& write_section) {
  return with_section(write_engine(make_full_model()), s::SectionId::kKernels,
                      encode(write_section));
}

TEST(FormatKernels, RoundTripKeepsEveryModuleField) {
  const EngineModel original = make_full_model();
  ASSERT_EQ(original.kernels.size(), 2u);
  const Bytes file = write_engine(original);
  EXPECT_TRUE(has_section(file, s::SectionId::kKernels));
  EXPECT_EQ(s::section_name(static_cast<uint32_t>(s::SectionId::kKernels)), "kernels");
  const EngineModel back = read(file);
  EXPECT_EQ(back.version.major, 1);
  EXPECT_EQ(back.version.minor, 1);
  expect_models_equal(original, back);
  EXPECT_EQ(back.kernels[0].source, "extern \"C\" __global__ void g0() {}\n");
  EXPECT_EQ(back.kernels[1].compiler, "");
  EXPECT_EQ(back.layers[1].attrs.get_string(kKernelModuleAttribute), "group_1");
  EXPECT_EQ(write_engine(back), file);  // deterministic
}

TEST(FormatKernels, EnginesWithoutKernelsHaveNoSection) {
  const Bytes cpu = write_engine(make_small_model());
  EXPECT_FALSE(has_section(cpu, s::SectionId::kKernels));
  EXPECT_TRUE(read(cpu).kernels.empty());
  EngineModel cuda = make_full_model();
  cuda.kernels.clear();
  cuda.layers[1].attrs = AttributeMap{};
  EXPECT_FALSE(has_section(write_engine(cuda), s::SectionId::kKernels));
}

TEST(FormatKernels, WriterRejectsInconsistentModules) {
  auto expect_invalid = [](const std::function<void(EngineModel&)>& mutate,
                           std::initializer_list<const char*> needles) {
    EngineModel model = make_full_model();
    mutate(model);
    try {
      write_engine(model);
      ADD_FAILURE() << "accepted: " << *needles.begin();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      for (const char* needle : needles) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
            << "missing '" << needle << "' in: " << e.what();
      }
    }
  };
  expect_invalid([](EngineModel& m) { m.kernels[1].name.clear(); },
                 {"kernel module 1 ''", "empty name"});
  expect_invalid([](EngineModel& m) { m.kernels[1].name = "group_0"; },
                 {"kernel module 1 'group_0'", "duplicate name"});
  expect_invalid([](EngineModel& m) { m.kernels[0].sm_arch = 80; },
                 {"kernel module 0 'group_0'", "compiled for sm_80", "targets sm_90"});
  expect_invalid([](EngineModel& m) { m.kernels[0].cubin.clear(); },
                 {"kernel module 0 'group_0'", "empty cubin"});
  expect_invalid([](EngineModel& m) { m.kernels[0].cubin = {0x7f, 'E', 'L'}; },
                 {"(3 bytes) is not a CUDA ELF image", "too few for an ELF header"});
  expect_invalid([](EngineModel& m) { m.kernels[1].cubin[3] = 'G'; }, {"no ELF magic"});
  expect_invalid([](EngineModel& m) { m.kernels[1].cubin[18] = 62; },  // EM_X86_64
                 {"ELF machine 62 is not CUDA"});
  expect_invalid(
      [](EngineModel& m) {
        // One section header claimed at offset 64, past the end of the 80-byte image.
        std::vector<uint8_t>& cubin = m.kernels[0].cubin;
        store_le<uint64_t>(cubin.data() + 40, 64);
        store_le<uint16_t>(cubin.data() + 58, 64);
        store_le<uint16_t>(cubin.data() + 60, 1);
      },
      {"1 section headers at offset 64 end past the 80-byte image"});
  expect_invalid(
      [](EngineModel& m) {
        m.target = Target{"cpu", 0, ""};
        for (KernelModule& module : m.kernels) module.sm_arch = 0;
      },
      {"2 kernel module(s) in an engine for target 'cpu'", "cuda engines only"});
  expect_invalid(
      [](EngineModel& m) {
        m.layers[0].attrs.set(kKernelModuleAttribute, Attribute::of_string("group_7"));
      },
      {"layer 0 'node_mul'", "names kernel module 'group_7'", "2 ('group_0', 'group_1')"});
  expect_invalid(
      [](EngineModel& m) {
        m.kernels.clear();
        m.layers[0].attrs = AttributeMap{};
      },
      {"layer 1 'node_add'", "names kernel module 'group_1'", "the engine has none"});
  expect_invalid(
      [](EngineModel& m) {
        m.layers[1].attrs.set(kKernelModuleAttribute, Attribute::of_int(1));
      },
      {"layer 1 'node_add', attribute 'kiln_kernel'", "expected a string", "got kind int"});
}

TEST(FormatKernels, ReaderRejectsBadModules) {
  const EngineModel model = make_full_model();
  ASSERT_NO_THROW(read(with_kernels_section([&](WireWriter& w) {
    w.list_field(s::kernels::kModules, model.kernels, write_module);
  })));
  auto one_module = [&](const std::function<void(WireWriter&)>& write_item) {
    return with_kernels_section([&](WireWriter& w) {
      w.list_field(s::kernels::kModules, std::vector<int>{0, 1}, [&](WireWriter& mw, int i) {
        i == 0 ? write_module(mw, model.kernels[0]) : write_item(mw);
      });
    });
  };
  KernelModule good = model.kernels[1];
  expect_corrupt(one_module([&](WireWriter& w) {
                   w.int_field(s::kernel_module::kSmArch, 90);
                   w.bytes_field(s::kernel_module::kCubin, good.cubin);
                 }),
                 {"test.engine", "section 'kernels', module 1", "required field 'name'"});
  expect_corrupt(one_module([&](WireWriter& w) {
                   w.string_field(s::kernel_module::kName, "group_1");
                   w.int_field(s::kernel_module::kSmArch, 90);
                 }),
                 {"module 1", "required field 'cubin'"});
  expect_corrupt(one_module([&](WireWriter& w) {
                   w.string_field(s::kernel_module::kName, "group_1");
                   w.bytes_field(s::kernel_module::kCubin, good.cubin);
                 }),
                 {"module 1", "required field 'sm_arch'"});
  expect_corrupt(one_module([&](WireWriter& w) {
                   w.string_field(s::kernel_module::kName, "group_1");
                   w.int_field(s::kernel_module::kSmArch, -90);
                   w.bytes_field(s::kernel_module::kCubin, good.cubin);
                 }),
                 {"module 1", "'sm_arch'", "-90"});
  expect_corrupt(one_module([&](WireWriter& w) {
                   w.string_field(s::kernel_module::kName, "group_1");
                   w.int_field(s::kernel_module::kSmArch, 90);
                   w.string_field(s::Field{s::kernel_module::kCubin.tag, s::Wire::kInt, "cubin"},
                                  "12345678");
                 }),
                 {"'cubin'", "expected wire type bytes, got int"});
  good.name = "group_0";
  expect_corrupt(one_module([&](WireWriter& w) { write_module(w, good); }),
                 {"kernel module 1 'group_0': duplicate name"});
  good.name = "group_1";
  good.sm_arch = 100;
  expect_corrupt(one_module([&](WireWriter& w) { write_module(w, good); }),
                 {"compiled for sm_100, but the engine targets sm_90"});
  good.sm_arch = 90;
  good.cubin = {'M', 'Z', 0, 0, 0};
  expect_corrupt(one_module([&](WireWriter& w) { write_module(w, good); }),
                 {"kernel module 1 'group_1'", "not a CUDA ELF image"});
  // An impossible module count is refused before anything is allocated.
  expect_corrupt(with_kernels_section([](WireWriter& w) {
                   w.bytes_field(s::Field{s::kernels::kModules.tag, s::Wire::kList, "modules"},
                                 Bytes{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0});
                 }),
                 {"section 'kernels'", "claims 2147483647 items"});
  // Without its module, the layer naming it is the error.
  expect_corrupt(with_kernels_section([&](WireWriter& w) {
                   w.list_field(s::kernels::kModules, std::vector<int>{0},
                                [&](WireWriter& mw, int) { write_module(mw, model.kernels[0]); });
                 }),
                 {"layer 1 'node_add'", "names kernel module 'group_1'"});
}

TEST(FormatKernels, SectionOnlyInCudaEnginesOfFormat11) {
  // An empty kernels section in a cpu engine.
  const Bytes cpu = write_engine(make_small_model());
  const Bytes empty_list = encode([](WireWriter& w) {
    w.list_field(s::kernels::kModules, std::vector<int>{}, [](WireWriter&, int) {});
  });
  expect_corrupt(with_section(cpu, static_cast<uint32_t>(s::SectionId::kKernels), empty_list,
                              FormatVersion{1, 1}),
                 {"section 'kernels' (id 9)", "target is 'cpu'", "only cuda engines"});
  // A file that says 1.0 cannot have the section 1.1 introduced.
  const Bytes full = write_engine(make_full_model());
  const SectionEntry kernels = find_section(full, s::SectionId::kKernels);
  const std::span<const uint8_t> body = std::span<const uint8_t>(full).subspan(kernels.offset,
                                                                                kernels.size);
  expect_corrupt(with_section(full, static_cast<uint32_t>(s::SectionId::kKernels), body,
                              FormatVersion{1, 0}),
                 {"section 'kernels'", "appeared in format 1.1", "says it is format 1.0"});
  // The same section under 1.1, or a newer minor, is fine.
  EXPECT_EQ(read(with_section(full, static_cast<uint32_t>(s::SectionId::kKernels), body,
                              FormatVersion{1, 4}))
                .kernels.size(),
            2u);
}

TEST(FormatKernels, MutatedKernelSectionsGiveKilnErrors) {
  // Flip every byte of the kernels section (checksum re-stamped): a clean kiln::Error or a model
  // that still verifies, never a crash.
  const Bytes file = write_engine(make_full_model());
  const SectionEntry kernels = find_section(file, s::SectionId::kKernels);
  size_t rejected = 0;
  for (uint64_t pos = kernels.offset; pos < kernels.offset + kernels.size; ++pos) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      Bytes flipped = file;
      flipped[pos] ^= mask;
      restamp_checksum(flipped);
      try {
        const EngineModel model = read(flipped);
        EXPECT_NO_THROW(write_engine(model)) << "byte " << pos << " accepted but inconsistent";
      } catch (const Error& e) {
        ++rejected;
        ASSERT_EQ(e.code(), ErrorCode::kCorruptFile) << "byte " << pos << ": " << e.what();
        ASSERT_NE(std::string(e.what()).find("test.engine"), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(rejected, 0u);
}

TEST(FormatKernels, CubinStructureCheckKeepsTablesInsideTheImage) {
  // A 256-byte image: two section headers at 64 (one with contents at [192, 224), one NOBITS far
  // outside the file, which is fine) and one program header at 192.
  std::vector<uint8_t> image = fake_cubin(0, 256);
  store_le<uint64_t>(image.data() + 40, 64);  // e_shoff
  store_le<uint16_t>(image.data() + 58, 64);  // e_shentsize
  store_le<uint16_t>(image.data() + 60, 2);   // e_shnum
  store_le<uint16_t>(image.data() + 62, 0);   // e_shstrndx
  uint8_t* first = image.data() + 64;
  store_le<uint32_t>(first + 4, 1);  // SHT_PROGBITS
  store_le<uint64_t>(first + 24, 192);
  store_le<uint64_t>(first + 32, 32);
  uint8_t* second = image.data() + 128;
  store_le<uint32_t>(second + 4, 8);  // SHT_NOBITS
  store_le<uint64_t>(second + 24, 1u << 30);
  store_le<uint64_t>(second + 32, 1u << 30);
  store_le<uint64_t>(image.data() + 32, 192);  // e_phoff
  store_le<uint16_t>(image.data() + 54, 56);   // e_phentsize
  store_le<uint16_t>(image.data() + 56, 1);    // e_phnum
  store_le<uint64_t>(image.data() + 192 + 8, 0);
  store_le<uint64_t>(image.data() + 192 + 32, 256);
  EXPECT_EQ(cubin_image_problem(image), "");

  auto problem_after = [&](const std::function<void(std::vector<uint8_t>&)>& mutate) {
    std::vector<uint8_t> bad = image;
    mutate(bad);
    return cubin_image_problem(bad);
  };
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint64_t>(b.data() + 64 + 32, 65); }),
            "section 0 [192, 192 + 65) ends past the 256-byte image");
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint64_t>(b.data() + 64 + 24, ~uint64_t{0}); }),
            "section 0 [18446744073709551615, 18446744073709551615 + 32) ends past the 256-byte "
            "image");
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint16_t>(b.data() + 60, 4); }),
            "4 section headers at offset 64 end past the 256-byte image");
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint16_t>(b.data() + 62, 2); }),
            "section name table index 2 is not below the 2 sections");
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint16_t>(b.data() + 58, 40); }),
            "section header size 40, expected 64");
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint64_t>(b.data() + 192 + 32, 257); }),
            "segment 0 [0, 0 + 257) ends past the 256-byte image");
  EXPECT_EQ(problem_after([](auto& b) { store_le<uint64_t>(b.data() + 32, 250); }),
            "1 program headers at offset 250 end past the 256-byte image");
  EXPECT_EQ(problem_after([](auto& b) { b[4] = 1; }),
            "not a little-endian 64-bit ELF image (class 1, data 1)");
  EXPECT_EQ(cubin_image_problem(std::vector<uint8_t>(image.begin(), image.begin() + 63)),
            "63 bytes are too few for an ELF header (64)");
}

TEST(FormatKernels, Format10FixtureStillReads) {
  const EngineModel model =
      read_engine_file(std::string(KILN_SOURCE_DIR) + "/tests/data/engines/format_1_0_cpu.kiln");
  EXPECT_EQ(model.version.major, 1);
  EXPECT_EQ(model.version.minor, 0);
  EXPECT_EQ(model.target.backend, "cpu");
  EXPECT_TRUE(model.kernels.empty());
  ASSERT_FALSE(model.layers.empty());
  EXPECT_EQ(model.layers.front().op, "Conv");
  EXPECT_EQ(model.layers.back().op, "Softmax");
}

}  // namespace
}  // namespace kiln::format
