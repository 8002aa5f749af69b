// Shared by the engine format tests: models with every field populated, byte surgery on engine
// files (re-assembled sections, re-stamped checksums) and error expectations.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/attributes.hpp"
#include "format/checksum.hpp"
#include "format/engine_container.hpp"
#include "format/engine_io.hpp"
#include "format/engine_model.hpp"
#include "format/engine_schema.hpp"
#include "format/wire_format.hpp"
#include "fake_cubin.hpp"

namespace kiln::format::format_testing {

namespace s = schema;
using Bytes = std::vector<uint8_t>;

// ---- models -------------------------------------------------------------------------------------

inline std::shared_ptr<const HostTensor> make_attr_tensor() {
  auto t = std::make_shared<HostTensor>(DType::kInt32, Shape{2, 3});
  for (int i = 0; i < 6; ++i) t->data<int32_t>()[i] = 10 * i - 7;
  return t;
}

using kiln::testing::fake_cubin;

// A model with every field kind populated: all attribute kinds (tensor attributes included),
// dynamic dimensions with ranges, weights of two dtypes, plugins, kernel modules and metadata.
inline EngineModel make_full_model() {
  EngineModel m;
  m.producer = "kiln 0.1.0-format-test";
  m.target = Target{"cuda", 90, "NVIDIA H100 80GB HBM3"};
  m.precision = DType::kFloat16;

  auto blob = std::make_shared<Bytes>(192);
  for (size_t i = 0; i < blob->size(); ++i) (*blob)[i] = static_cast<uint8_t>(i * 37 + 5);
  m.weights_storage = blob;
  m.weights = *blob;

  m.tensors = {
      {"x", DType::kFloat32, {-1, 3, 4}, TensorKind::kInput, 0, 0},
      {"w", DType::kFloat16, {3, 4}, TensorKind::kWeight, 0, 24},
      {"b", DType::kInt64, {5}, TensorKind::kWeight, 64, 40},
      {"h", DType::kFloat32, {-1, 3, 4}, TensorKind::kActivation, 0, 0},
      {"y", DType::kFloat32, {-1, 3, 4}, TensorKind::kOutput, 0, 0},
      {"s", DType::kBFloat16, {}, TensorKind::kWeight, 128, 2},
  };
  m.inputs = {{"x", 0, {{1, 4, 8}, {3, 3, 3}, {4, 4, 4}}}};
  m.outputs = {{"y", 4, {}}};

  Layer mul{"node_mul", "Mul", {0, 1}, {3}, {}};
  mul.attrs.set("alpha", Attribute::of_float(-0.25f));
  mul.attrs.set("axis", Attribute::of_int(-3));
  mul.attrs.set("mode", Attribute::of_string("nearest"));
  mul.attrs.set("pads", Attribute::of_ints({0, 1, -2, std::numeric_limits<int64_t>::max()}));
  mul.attrs.set("scales", Attribute::of_floats({1.5f, 2.0f, -0.0f}));
  mul.attrs.set("names", Attribute::of_strings({"a", "", "ccc"}));
  mul.attrs.set("value", Attribute::of_tensor(make_attr_tensor()));
  Layer add{"node_add", "Add", {3, -1, 2}, {4}, {}};
  add.attrs.set("empty_ints", Attribute::of_ints({}));
  add.attrs.set(kKernelModuleAttribute, Attribute::of_string("group_1"));
  m.layers = {mul, add};

  m.memory_plan.arena_size = 4096;
  m.memory_plan.alignment = 256;
  m.memory_plan.is_static = false;
  const uint64_t none = MemoryPlan::kNoOffset;
  m.memory_plan.offsets = {none, none, none, 0, none, none};
  m.memory_plan.first_use = {0, 0, 1, 0, 1, -1};
  m.memory_plan.last_use = {0, 0, 1, 1, 1, -1};

  PluginRef plugin{"acme", "FancyNorm", "2.1", {}, "libacme_plugins.so"};
  plugin.fields.set("eps", Attribute::of_float(1e-5f));
  plugin.fields.set("groups", Attribute::of_ints({4, 8}));
  m.plugins = {plugin};
  m.kernels = {
      {"group_0", 90, "nvrtc 13.0", "extern \"C\" __global__ void g0() {}\n", fake_cubin(0xa0)},
      {"group_1", 90, "", "", fake_cubin(0xb1, 64)},
  };
  m.metadata_json = R"({"model":"test","opset":17})";
  return m;
}

// A small model (a few hundred bytes) for the loops over every byte.
inline EngineModel make_small_model() {
  EngineModel m;
  m.producer = "kiln small";
  auto blob = std::make_shared<Bytes>(8);
  for (size_t i = 0; i < blob->size(); ++i) (*blob)[i] = static_cast<uint8_t>(i + 1);
  m.weights_storage = blob;
  m.weights = *blob;
  m.tensors = {
      {"x", DType::kFloat32, {-1, 2}, TensorKind::kInput, 0, 0},
      {"w", DType::kFloat32, {2}, TensorKind::kWeight, 0, 8},
      {"y", DType::kFloat32, {-1, 2}, TensorKind::kOutput, 0, 0},
  };
  m.inputs = {{"x", 0, {{1, 2, 4}, {2, 2, 2}}}};
  m.outputs = {{"y", 2, {}}};
  Layer layer{"n", "Mul", {0, 1}, {2}, {}};
  layer.attrs.set("k", Attribute::of_ints({1, 2}));
  layer.attrs.set("t", Attribute::of_tensor(make_attr_tensor()));
  m.layers = {layer};
  m.memory_plan.offsets = {MemoryPlan::kNoOffset, MemoryPlan::kNoOffset, MemoryPlan::kNoOffset};
  m.memory_plan.first_use = {0, 0, 0};
  m.memory_plan.last_use = {0, 0, 0};
  m.plugins = {{"ns", "P", "1", {}, ""}};
  return m;
}

inline void expect_models_equal(const EngineModel& a, const EngineModel& b) {
  EXPECT_EQ(a.producer, b.producer);
  EXPECT_EQ(a.target.backend, b.target.backend);
  EXPECT_EQ(a.target.sm_arch, b.target.sm_arch);
  EXPECT_EQ(a.target.device_name, b.target.device_name);
  EXPECT_EQ(a.precision, b.precision);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].dtype, b.tensors[i].dtype);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
    EXPECT_EQ(a.tensors[i].kind, b.tensors[i].kind);
    EXPECT_EQ(a.tensors[i].weight_offset, b.tensors[i].weight_offset);
    EXPECT_EQ(a.tensors[i].weight_size, b.tensors[i].weight_size);
  }
  auto expect_bindings_equal = [](const std::vector<Binding>& x, const std::vector<Binding>& y) {
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(x[i].name, y[i].name);
      EXPECT_EQ(x[i].tensor, y[i].tensor);
      ASSERT_EQ(x[i].ranges.size(), y[i].ranges.size());
      for (size_t d = 0; d < x[i].ranges.size(); ++d) {
        EXPECT_EQ(x[i].ranges[d].min, y[i].ranges[d].min);
        EXPECT_EQ(x[i].ranges[d].opt, y[i].ranges[d].opt);
        EXPECT_EQ(x[i].ranges[d].max, y[i].ranges[d].max);
      }
    }
  };
  expect_bindings_equal(a.inputs, b.inputs);
  expect_bindings_equal(a.outputs, b.outputs);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    EXPECT_EQ(a.layers[i].name, b.layers[i].name);
    EXPECT_EQ(a.layers[i].op, b.layers[i].op);
    EXPECT_EQ(a.layers[i].inputs, b.layers[i].inputs);
    EXPECT_EQ(a.layers[i].outputs, b.layers[i].outputs);
    ASSERT_EQ(a.layers[i].attrs.size(), b.layers[i].attrs.size());
    for (size_t k = 0; k < a.layers[i].attrs.size(); ++k) {
      const auto& [name_a, attr_a] = a.layers[i].attrs.items()[k];
      const auto& [name_b, attr_b] = b.layers[i].attrs.items()[k];
      EXPECT_EQ(name_a, name_b);
      EXPECT_EQ(attr_a.kind, attr_b.kind) << name_a;
      EXPECT_TRUE(attr_a == attr_b) << "attribute " << name_a;
    }
  }
  EXPECT_EQ(a.memory_plan.arena_size, b.memory_plan.arena_size);
  EXPECT_EQ(a.memory_plan.alignment, b.memory_plan.alignment);
  EXPECT_EQ(a.memory_plan.is_static, b.memory_plan.is_static);
  EXPECT_EQ(a.memory_plan.offsets, b.memory_plan.offsets);
  EXPECT_EQ(a.memory_plan.first_use, b.memory_plan.first_use);
  EXPECT_EQ(a.memory_plan.last_use, b.memory_plan.last_use);
  ASSERT_EQ(a.plugins.size(), b.plugins.size());
  for (size_t i = 0; i < a.plugins.size(); ++i) {
    EXPECT_EQ(a.plugins[i].plugin_namespace, b.plugins[i].plugin_namespace);
    EXPECT_EQ(a.plugins[i].name, b.plugins[i].name);
    EXPECT_EQ(a.plugins[i].version, b.plugins[i].version);
    EXPECT_EQ(a.plugins[i].library, b.plugins[i].library);
    EXPECT_TRUE(a.plugins[i].fields == b.plugins[i].fields);
  }
  ASSERT_EQ(a.kernels.size(), b.kernels.size());
  for (size_t i = 0; i < a.kernels.size(); ++i) {
    SCOPED_TRACE("kernel module " + std::to_string(i));
    EXPECT_EQ(a.kernels[i].name, b.kernels[i].name);
    EXPECT_EQ(a.kernels[i].sm_arch, b.kernels[i].sm_arch);
    EXPECT_EQ(a.kernels[i].compiler, b.kernels[i].compiler);
    EXPECT_EQ(a.kernels[i].source, b.kernels[i].source);
    EXPECT_EQ(a.kernels[i].cubin, b.kernels[i].cubin);
  }
  EXPECT_EQ(a.metadata_json, b.metadata_json);
  EXPECT_EQ(Bytes(a.weights.begin(), a.weights.end()), Bytes(b.weights.begin(), b.weights.end()));
}

// ---- byte surgery -------------------------------------------------------------------------------

inline std::shared_ptr<const Bytes> share(Bytes bytes) {
  return std::make_shared<const Bytes>(std::move(bytes));
}

inline EngineModel read(const Bytes& bytes) {
  return read_engine(share(bytes), "test.engine");
}

// Runs read_engine and returns the error it throws; fails the test when it throws nothing or
// something other than kiln::Error.
inline Error read_error(const Bytes& bytes) {
  try {
    read(bytes);
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-kiln exception: " << e.what();
    return Error(ErrorCode::kInternal, e.what());
  }
  ADD_FAILURE() << "read_engine accepted the bytes";
  return Error(ErrorCode::kOk, "");
}

inline void restamp_checksum(Bytes& file) {
  store_le<uint64_t>(file.data() + s::kOffsetChecksum, engine_checksum(file));
}

inline std::vector<SectionEntry> sections_of(const Bytes& file) {
  const std::string source = "test.engine";
  return verify_container(file, read_engine_header(file, source), source);
}

inline SectionEntry find_section(const Bytes& file, s::SectionId id) {
  for (const SectionEntry& e : sections_of(file)) {
    if (e.id == static_cast<uint32_t>(id)) return e;
  }
  ADD_FAILURE() << "no section " << static_cast<uint32_t>(id);
  return {};
}

// Reassembles `file` with section `id` replaced by `replacement` (appended if absent), and
// optionally other header values.
inline Bytes with_section(const Bytes& file, uint32_t id, std::span<const uint8_t> replacement,
                          FormatVersion version = {}) {
  std::vector<SectionPayload> sections;
  bool replaced = false;
  for (const SectionEntry& e : sections_of(file)) {
    SectionPayload p{e.id, std::span<const uint8_t>(file).subspan(e.offset, e.size)};
    if (e.id == static_cast<uint32_t>(s::SectionId::kWeights)) p.alignment = kWeightAlignment;
    if (e.id == id) {
      p.bytes = replacement;
      replaced = true;
    }
    sections.push_back(p);
  }
  if (!replaced) sections.push_back({id, replacement});
  return assemble_engine(version, "kiln test", 0, sections);
}

inline Bytes with_section(const Bytes& file, s::SectionId id,
                          std::span<const uint8_t> replacement) {
  return with_section(file, static_cast<uint32_t>(id), replacement);
}

// Reassembles `file` without section `id`.
inline Bytes without_section(const Bytes& file, s::SectionId id) {
  std::vector<SectionPayload> sections;
  for (const SectionEntry& e : sections_of(file)) {
    if (e.id == static_cast<uint32_t>(id)) continue;
    sections.push_back({e.id, std::span<const uint8_t>(file).subspan(e.offset, e.size),
                        e.id == static_cast<uint32_t>(s::SectionId::kWeights) ? kWeightAlignment
                                                                                : s::kSectionAlignment});
  }
  return assemble_engine({}, "kiln test", 0, sections);
}

// ---- hand-made sections ------------------------------------------------------------------------

inline Bytes encode(const std::function<void(WireWriter&)>& write) {
  Bytes out;
  WireWriter w(out);
  write(w);
  return out;
}

inline void expect_corrupt(const Bytes& file, std::initializer_list<const char*> needles) {
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile) << e.what();
  for (const char* needle : needles) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "missing '" << needle << "' in: " << e.what();
  }
}

}  // namespace kiln::format::format_testing
