// The host-side bookkeeping of data-dependent plugin outputs that the CPU and CUDA plugin kernels
// share (src/plugins/plugin_layer.hpp): the shape a plugin wrote is checked against the bound its
// buffer was sized for, and a plugin without execute_cuda says so when a CUDA run asks for it.
#include <gtest/gtest.h>

#include <string>

#include "base/error.hpp"
#include "kiln/plugin.h"
#include "plugins/plugin_layer.hpp"
#include "plugins/plugin_registry.hpp"

namespace kiln {
namespace {

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
kiln_status infer_bounded(void*, const kiln_plugin_tensor_desc* in, int32_t, kiln_plugin_output_desc* out,
                          int32_t, kiln_plugin_error*) {
  out[0].dtype = in[0].dtype;
  out[0].ndim = 1;
  out[0].dims[0] = {KILN_PLUGIN_DIM_DATA_DEPENDENT, 8, 0, 0};
  return KILN_OK;
}
kiln_status execute_nothing(void*, const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t, void*,
                            kiln_plugin_error*) {
  return KILN_OK;
}

const plugins::RegisteredCreator& cpu_only_creator() {
  static const kiln_plugin_creator creator = [] {
    kiln_plugin_creator c{};
    c.abi_version = KILN_PLUGIN_ABI_VERSION;
    c.plugin_namespace = "kiln.unit.written";
    c.name = "CpuOnlyFilter";
    c.version = 1;
    c.data_dependent_shapes = 1;
    c.create = &create_nothing;
    c.destroy = &destroy_nothing;
    c.fields = &no_fields;
    c.infer = &infer_bounded;
    c.execute_cpu = &execute_nothing;
    return c;
  }();
  plugins::plugin_registry().add(&creator, "libunit.so");
  return *plugins::plugin_registry().find("kiln.unit.written", "CpuOnlyFilter", 1);
}

std::string refusal(const plugins::PluginInstance& instance, size_t output, const Shape& written,
                    const Shape& bound) {
  try {
    instance.checked_written_shape(output, written, bound);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(PluginWrittenShape, ShapesWithinTheBoundAreTaken) {
  const plugins::PluginInstance instance(cpu_only_creator(), AttributeMap{});
  EXPECT_EQ(instance.checked_written_shape(0, {3, 2}, {5, 2}), (Shape{3, 2}));
  EXPECT_EQ(instance.checked_written_shape(1, {0, 3}, {20, 3}), (Shape{0, 3}));
  EXPECT_EQ(instance.checked_written_shape(0, {5, 2}, {5, 2}), (Shape{5, 2}));
}

TEST(PluginWrittenShape, ShapesBeyondTheBoundAreRefusedNamingThePluginAndBothShapes) {
  const plugins::PluginInstance instance(cpu_only_creator(), AttributeMap{});
  const std::string more = refusal(instance, 0, {6, 2}, {5, 2});
  EXPECT_NE(more.find("kiln.unit.written::CpuOnlyFilter v1"), std::string::npos) << more;
  EXPECT_NE(more.find("wrote output 0 with shape " + shape_to_string({6, 2})), std::string::npos) << more;
  EXPECT_NE(more.find("upper bound " + shape_to_string({5, 2})), std::string::npos) << more;
  EXPECT_NE(refusal(instance, 0, {10}, {5, 2}), "");  // another rank
  EXPECT_NE(refusal(instance, 1, {-1, 2}, {5, 2}), "");  // a negative dim
}

TEST(PluginWrittenShape, PluginWithoutExecuteCudaSaysSo) {
  const plugins::PluginInstance instance(cpu_only_creator(), AttributeMap{});
  EXPECT_FALSE(instance.runs_on_cuda());
  try {
    instance.execute_cuda({}, {}, nullptr, nullptr);
    FAIL() << "execute_cuda of a CPU-only plugin ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("has no CUDA implementation (execute_cuda is NULL)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kiln
