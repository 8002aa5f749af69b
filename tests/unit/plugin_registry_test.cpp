// The plugin registry (src/plugins/plugin_registry.hpp) and plugin layers in CPU engines: duplicate
// registration, conflicts, ABI mismatches, loading the test plugin library (tests/plugins), and
// engines that name a plugin that is or is not registered.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "add_relu_engine.hpp"
#include "engine_model_builder.hpp"
#include "format/engine_io.hpp"
#include "kiln/plugin.h"
#include "kiln/runtime.hpp"
#include "plugins/engine_plugins.hpp"
#include "plugins/plugin_layer.hpp"
#include "plugins/plugin_registry.hpp"

namespace kiln {
namespace {

using testing::error_message;

kiln_status create_nothing(const kiln_plugin_field*, int32_t, void** instance, kiln_plugin_error*) {
  *instance = nullptr;
  return KILN_OK;
}
void destroy_nothing(void*) {}
kiln_status no_fields(void*, const kiln_plugin_field** fields, int32_t* count, kiln_plugin_error*) {
  *fields = nullptr;
  *count = 0;
  return KILN_OK;
}
kiln_status infer_copy(void*, const kiln_plugin_tensor_desc* in, int32_t,
                       kiln_plugin_output_desc* out, int32_t, kiln_plugin_error*) {
  out[0].dtype = in[0].dtype;
  out[0].ndim = in[0].ndim;
  for (int32_t d = 0; d < in[0].ndim; ++d) out[0].dims[d] = {KILN_PLUGIN_DIM_COPY, 0, 0, d};
  return KILN_OK;
}
kiln_status execute_fail(void*, const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t,
                         void*, kiln_plugin_error* error) {
  std::snprintf(error->message, sizeof error->message, "the test plugin always fails");
  return KILN_ERROR_INVALID_ARGUMENT;
}

kiln_plugin_creator make_creator(const char* name, int32_t version) {
  kiln_plugin_creator c{};
  c.abi_version = KILN_PLUGIN_ABI_VERSION;
  c.plugin_namespace = "kiln.unit";
  c.name = name;
  c.version = version;
  c.create = &create_nothing;
  c.destroy = &destroy_nothing;
  c.fields = &no_fields;
  c.infer = &infer_copy;
  c.execute_cpu = &execute_fail;
  return c;
}

TEST(PluginRegistry, SameCreatorTwiceIsHarmless) {
  static const kiln_plugin_creator creator = make_creator("Twice", 1);
  plugins::PluginRegistry registry;
  registry.add(&creator, "/opt/a/libone.so");
  registry.add(&creator, "/opt/a/libone.so");
  EXPECT_EQ(registry.describe().size(), 1u);
  const plugins::RegisteredCreator* found = registry.find("kiln.unit", "Twice", 1);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->creator, &creator);
  EXPECT_EQ(found->library_file_name(), "libone.so");
  EXPECT_EQ(registry.find("kiln.unit", "Twice", 2), nullptr);
}

TEST(PluginRegistry, TwoCreatorsUnderOneNameAndVersionNameBothLibraries) {
  static const kiln_plugin_creator first = make_creator("Clash", 1);
  static const kiln_plugin_creator second = make_creator("Clash", 1);
  plugins::PluginRegistry registry;
  registry.add(&first, "/opt/a/libfirst.so");
  ErrorCode code = ErrorCode::kOk;
  const std::string message =
      error_message([&] { registry.add(&second, "/opt/b/libsecond.so"); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("kiln.unit::Clash v1"), std::string::npos) << message;
  EXPECT_NE(message.find("/opt/a/libfirst.so"), std::string::npos) << message;
  EXPECT_NE(message.find("/opt/b/libsecond.so"), std::string::npos) << message;
  EXPECT_EQ(registry.find("kiln.unit", "Clash", 1)->creator, &first);
}

TEST(PluginRegistry, HighestVersionIsTheDefault) {
  static const kiln_plugin_creator v1 = make_creator("Versions", 1);
  static const kiln_plugin_creator v3 = make_creator("Versions", 3);
  plugins::PluginRegistry registry;
  registry.add(&v3, "libv.so");
  registry.add(&v1, "libv.so");
  EXPECT_EQ(registry.find_latest("kiln.unit", "Versions")->version, 3);
  EXPECT_EQ(registry.versions("kiln.unit", "Versions"), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(registry.find_latest("kiln.unit", "Other"), nullptr);
}

TEST(PluginRegistry, DefaultDomainSpellingsAreOneNamespace) {
  static kiln_plugin_creator creator = make_creator("Gelu2", 1);
  creator.plugin_namespace = "ai.onnx";
  plugins::PluginRegistry registry;
  registry.add(&creator, "libg.so");
  EXPECT_NE(registry.find("", "Gelu2", 1), nullptr);
  EXPECT_NE(registry.find_latest("ai.onnx", "Gelu2"), nullptr);
}

// The runtime takes every ABI version from the oldest it knows to its own, and refuses 0 (below it)
// as well as versions from the future.
TEST(PluginRegistry, TakesEveryKnownAbiVersionAndRefusesOthers) {
  for (uint32_t version = KILN_PLUGIN_ABI_OLDEST_VERSION; version <= KILN_PLUGIN_ABI_VERSION; ++version) {
    kiln_plugin_creator creator = make_creator("Versioned", 1);
    creator.abi_version = version;
    plugins::PluginRegistry registry;
    EXPECT_NO_THROW(registry.add(&creator, "libv.so")) << "ABI version " << version;
  }
  kiln_plugin_creator too_old = make_creator("Versioned", 1);
  too_old.abi_version = KILN_PLUGIN_ABI_OLDEST_VERSION - 1;
  plugins::PluginRegistry registry;
  ErrorCode code = ErrorCode::kOk;
  const std::string message = error_message([&] { registry.add(&too_old, "libold.so"); }, &code);
  EXPECT_EQ(code, ErrorCode::kIncompatible);
  EXPECT_NE(message.find("takes ABI versions " + std::to_string(KILN_PLUGIN_ABI_OLDEST_VERSION) + " to " +
                         std::to_string(KILN_PLUGIN_ABI_VERSION)),
            std::string::npos)
      << message;
}

TEST(PluginRegistry, AnotherAbiVersionIsIncompatible) {
  static kiln_plugin_creator creator = make_creator("Future", 1);
  creator.abi_version = KILN_PLUGIN_ABI_VERSION + 1;
  plugins::PluginRegistry registry;
  ErrorCode code = ErrorCode::kOk;
  const std::string message =
      error_message([&] { registry.add(&creator, "/opt/libfuture.so"); }, &code);
  EXPECT_EQ(code, ErrorCode::kIncompatible);
  EXPECT_NE(message.find("ABI version " + std::to_string(KILN_PLUGIN_ABI_VERSION + 1)),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("/opt/libfuture.so"), std::string::npos) << message;
  EXPECT_EQ(registry.find("kiln.unit", "Future", 1), nullptr);

  // Through the C API: the status and kiln_last_error().
  EXPECT_EQ(kiln_register_plugin_creator(&creator), KILN_ERROR_INCOMPATIBLE);
  EXPECT_NE(std::string(kiln_last_error()).find("kiln.unit::Future v1"), std::string::npos)
      << kiln_last_error();
}

TEST(PluginRegistry, MalformedCreatorsAreRefused) {
  static kiln_plugin_creator no_create = make_creator("NoCreate", 1);
  no_create.create = nullptr;
  static kiln_plugin_creator no_execute = make_creator("NoExecute", 1);
  no_execute.execute_cpu = nullptr;
  static const kiln_plugin_field_spec reserved[] = {{"kiln_secret", KILN_PLUGIN_FIELD_INT, 0}};
  static kiln_plugin_creator bad_field = make_creator("BadField", 1);
  bad_field.field_specs = reserved;
  bad_field.num_field_specs = 1;
  static kiln_plugin_creator version_zero = make_creator("VersionZero", 0);
  plugins::PluginRegistry registry;
  for (const kiln_plugin_creator* c : {&no_create, &no_execute, &bad_field, &version_zero}) {
    ErrorCode code = ErrorCode::kOk;
    const std::string message = error_message([&] { registry.add(c, "libbad.so"); }, &code);
    EXPECT_EQ(code, ErrorCode::kInvalidArgument) << c->name;
    EXPECT_NE(message.find(c->name), std::string::npos) << message;
  }
  EXPECT_EQ(kiln_register_plugin_creator(nullptr), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(registry.describe().empty());
}

TEST(PluginLibrary, LoadsAndRegistersItsCreatorsOnce) {
  const std::string resolved = load_plugin_library(KILN_TEST_PLUGIN_PATH);
  EXPECT_NE(resolved.find("libkiln_test_plugin.so"), std::string::npos) << resolved;
  EXPECT_EQ(load_plugin_library(KILN_TEST_PLUGIN_PATH), resolved);  // again: harmless
  EXPECT_EQ(kiln_load_plugin_library(KILN_TEST_PLUGIN_PATH), KILN_OK);
  const plugins::RegisteredCreator* v2 =
      plugins::plugin_registry().find("kiln.test", "ScaledAdd", 2);
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ(v2->library_file_name(), "libkiln_test_plugin.so");
  EXPECT_EQ(plugins::plugin_registry().versions("kiln.test", "ScaledAdd"),
            (std::vector<int32_t>{1, 2}));
}

TEST(PluginLibrary, MissingFileIsNotFound) {
  ErrorCode code = ErrorCode::kOk;
  const std::string message =
      error_message([] { load_plugin_library("/nonexistent/libnothing.so"); }, &code);
  EXPECT_EQ(code, ErrorCode::kNotFound);
  EXPECT_NE(message.find("/nonexistent/libnothing.so"), std::string::npos) << message;
  EXPECT_EQ(kiln_load_plugin_library(nullptr), KILN_ERROR_INVALID_ARGUMENT);
}

// y = ScaledAdd(a, b; alpha) for a and b float32 [n], naming plugin (ns, name, version).
std::vector<uint8_t> make_plugin_engine(const std::string& name, int64_t version, float alpha,
                                        const std::string& ns = "kiln.test") {
  format::EngineModel m;
  using testing::add_tensor;
  const int32_t a = add_tensor(m, "a", DType::kFloat32, {4}, format::TensorKind::kInput);
  const int32_t b = add_tensor(m, "b", DType::kFloat32, {4}, format::TensorKind::kInput);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, {4}, format::TensorKind::kOutput);
  m.inputs.push_back(testing::binding(m, a));
  m.inputs.push_back(testing::binding(m, b));
  m.outputs.push_back(testing::binding(m, y));
  format::Layer l = testing::layer("scaled0", std::string(plugins::kPluginOp), {a, b}, {y});
  l.attrs.set(plugins::kNamespaceAttribute, Attribute::of_string(ns));
  l.attrs.set(plugins::kNameAttribute, Attribute::of_string(name));
  l.attrs.set(plugins::kVersionAttribute, Attribute::of_int(version));
  l.attrs.set(plugins::kLibraryAttribute, Attribute::of_string("libkiln_test_plugin.so"));
  if (ns == "kiln.test") l.attrs.set("alpha", Attribute::of_float(alpha));
  m.layers.push_back(std::move(l));
  m.plugins = plugins::plugin_refs_of_layers(m);
  return testing::write_unplanned_engine(m);
}

TEST(PluginEngine, RecordsItsPluginsAndRunsThemOnTheCpu) {
  load_plugin_library(KILN_TEST_PLUGIN_PATH);
  const auto bytes = make_plugin_engine("ScaledAdd", 1, 0.5f);
  const format::EngineModel model =
      format::read_engine(std::make_shared<const std::vector<uint8_t>>(bytes), "plugin.kiln");
  ASSERT_EQ(model.plugins.size(), 1u);
  EXPECT_EQ(model.plugins[0].plugin_namespace, "kiln.test");
  EXPECT_EQ(model.plugins[0].name, "ScaledAdd");
  EXPECT_EQ(model.plugins[0].version, "1");
  EXPECT_EQ(model.plugins[0].library, "libkiln_test_plugin.so");
  EXPECT_FLOAT_EQ(model.plugins[0].fields.get_float("alpha"), 0.5f);

  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::vector<float> a = {1, 2, 3, 4}, b = {10, 20, 30, 40};
  const std::vector<NamedTensor> inputs = {{"a", TensorRef{DType::kFloat32, {4}, a.data()}},
                                           {"b", TensorRef{DType::kFloat32, {4}, b.data()}}};
  const std::vector<Tensor> out = context.execute(inputs);
  ASSERT_EQ(out.size(), 1u);
  const float* y = out[0].data<float>();
  for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[i], a[i] + 0.5f * b[i]);
}

TEST(PluginEngine, UnregisteredPluginFailsAtLoadNamingPluginVersionAndLibrary) {
  load_plugin_library(KILN_TEST_PLUGIN_PATH);
  const auto bytes = make_plugin_engine("ScaledAdd", 7, 1.0f);
  ErrorCode code = ErrorCode::kOk;
  const std::string message =
      error_message([&] { Engine::load_bytes(bytes.data(), bytes.size()); }, &code);
  EXPECT_EQ(code, ErrorCode::kNotFound);
  EXPECT_NE(message.find("kiln.test::ScaledAdd v7"), std::string::npos) << message;
  EXPECT_NE(message.find("libkiln_test_plugin.so"), std::string::npos) << message;
  EXPECT_NE(message.find("registered versions of ScaledAdd: 1, 2"), std::string::npos) << message;
}

TEST(PluginEngine, PluginFailuresAtRunTimeNameTheLayerAndThePlugin) {
  static const kiln_plugin_creator failing = make_creator("AlwaysFails", 1);
  ASSERT_EQ(kiln_register_plugin_creator(&failing), KILN_OK) << kiln_last_error();
  const auto bytes = make_plugin_engine("AlwaysFails", 1, 0.0f, "kiln.unit");
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::vector<float> a(4, 1.0f), b(4, 2.0f);
  const std::vector<NamedTensor> inputs = {{"a", TensorRef{DType::kFloat32, {4}, a.data()}},
                                           {"b", TensorRef{DType::kFloat32, {4}, b.data()}}};
  ErrorCode code = ErrorCode::kOk;
  const std::string message = error_message([&] { context.execute(inputs); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("node 'scaled0' (Plugin)"), std::string::npos) << message;
  EXPECT_NE(message.find("plugin kiln.unit::AlwaysFails v1"), std::string::npos) << message;
  EXPECT_NE(message.find("execute_cpu: the test plugin always fails"), std::string::npos)
      << message;
}

}  // namespace
}  // namespace kiln
