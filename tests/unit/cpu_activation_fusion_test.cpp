// The CPU target's activation fusion (passes/cpu_activation_fusion.hpp): which activations after a
// Conv it takes (Clip with constant bounds, Sigmoid, Tanh, HardSwish, SiLU as Sigmoid + Mul in
// either operand order, after a fused residual), which it leaves (intermediates read elsewhere or
// graph outputs, computed or NaN bounds, a Mul by something else), and that the fused graph
// computes what the original did on the CPU kernels, NaN included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/conv_fusion.hpp"
#include "passes/cpu_activation_fusion.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::GraphBuilder;
using testing::make_tensor_f32;
using testing::random_inputs;
using testing::random_tensor_f32;

struct Net {
  GraphBuilder b;
  std::mt19937 rng{7};
  ir::ValueId x;

  Net() { x = b.input("x", {2, 4, 6, 6}); }

  ir::ValueId conv(const std::string& name, ir::ValueId in, int64_t group = 1) {
    const AttributeMap attrs = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}, {"group", Attribute::of_int(group)}});
    return b.node("Conv", name,
                  {in, b.constant(name + ".w", random_tensor_f32({4, 4 / group, 3, 3}, rng)),
                   b.constant(name + ".b", random_tensor_f32({4}, rng))},
                  attrs);
  }

  ir::ValueId scalar(const std::string& name, float v) { return b.constant(name, make_tensor_f32({}, {v})); }

  // Fuses (after conv_fusion, as the builder does) and checks the outputs against the unfused graph
  // on inputs with a NaN and infinities; returns the number of activation fusions.
  int fuse_and_compare() {
    infer_shapes(b.graph);
    auto inputs = random_inputs(b.graph, 3, -4.0f, 4.0f);
    HostTensor& in = inputs.at("x");
    in.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
    in.data<float>()[40] = std::numeric_limits<float>::infinity();
    in.data<float>()[77] = -std::numeric_limits<float>::infinity();
    const std::vector<HostTensor> before = evaluate(b.graph, inputs);
    fuse_conv_epilogues(b.graph);
    const int fused = fuse_cpu_conv_activations(b.graph);
    b.graph.verify();
    infer_shapes(b.graph);
    const std::vector<HostTensor> after = evaluate(b.graph, inputs);
    for (size_t i = 0; i < before.size(); ++i) expect_same(after[i], before[i]);
    return fused;
  }

  // Equal within 1e-5 relative, infinities and NaN where the original has them.
  static void expect_same(const HostTensor& got, const HostTensor& want) {
    ASSERT_EQ(got.shape, want.shape);
    size_t errors = 0;
    for (int64_t i = 0; i < want.numel() && errors < 5; ++i) {
      const float w = want.data<float>()[i], g = got.data<float>()[i];
      const bool ok = std::isnan(w) ? std::isnan(g)
                      : std::isinf(w) ? g == w
                                      : std::fabs(g - w) <= 1e-5f * std::max(1.0f, std::fabs(w));
      if (!ok) {
        ++errors;
        ADD_FAILURE() << "element " << i << ": " << g << ", unfused " << w;
      }
    }
  }

  std::vector<std::string> live_ops() const {
    std::vector<std::string> ops;
    for (const ir::Node& node : b.graph.nodes)
      if (!node.removed) ops.push_back(node.op_type);
    return ops;
  }

  const ir::Node& node_named(const std::string& name) const {
    for (const ir::Node& node : b.graph.nodes)
      if (!node.removed && node.name == name) return node;
    ADD_FAILURE() << "no node " << name;
    return b.graph.nodes.front();
  }
};

TEST(CpuActivationFusion, FusesClipSigmoidTanhHardSwishAndSilu) {
  Net n;
  const ir::ValueId c1 = n.conv("c1", n.x);
  const ir::ValueId a1 = n.b.node("Clip", "relu6", {c1, n.scalar("lo", 0.0f), n.scalar("hi", 6.0f)});
  const ir::ValueId c2 = n.conv("c2", a1, /*group=*/4);
  const ir::ValueId s2 = n.b.node("Sigmoid", "s2", {c2});
  const ir::ValueId a2 = n.b.node("Mul", "silu2", {s2, c2});  // gate first
  const ir::ValueId c3 = n.conv("c3", a2);
  const ir::ValueId a3 = n.b.node("Tanh", "tanh3", {c3});
  const ir::ValueId c4 = n.conv("c4", a3);
  const ir::ValueId a4 = n.b.node("HardSwish", "hs4", {c4});
  const ir::ValueId c5 = n.conv("c5", a4);
  const ir::ValueId a5 = n.b.node("Sigmoid", "s5", {c5});
  const ir::ValueId c6 = n.conv("c6", a5);
  const ir::ValueId s6 = n.b.node("Sigmoid", "s6", {c6});
  n.b.output(n.b.node("Mul", "silu6", {c6, s6}));
  EXPECT_EQ(n.fuse_and_compare(), 6);
  EXPECT_EQ(n.live_ops(), std::vector<std::string>(6, "Conv"));
  const ir::Node& clip = n.node_named("c1");
  EXPECT_EQ(clip.attrs.get_string("kiln_activation"), "Clip");
  EXPECT_EQ(clip.attrs.get_float("kiln_clip_min"), 0.0f);
  EXPECT_EQ(clip.attrs.get_float("kiln_clip_max"), 6.0f);
  EXPECT_EQ(n.node_named("c2").attrs.get_string("kiln_activation"), "Silu");
  EXPECT_EQ(n.node_named("c3").attrs.get_string("kiln_activation"), "Tanh");
  EXPECT_EQ(n.node_named("c4").attrs.get_string("kiln_activation"), "HardSwish");
  EXPECT_EQ(n.node_named("c5").attrs.get_string("kiln_activation"), "Sigmoid");
  EXPECT_EQ(n.node_named("c6").attrs.get_string("kiln_activation"), "Silu");
}

TEST(CpuActivationFusion, FusesAfterAResidualAndClipWithOneBound) {
  Net n;
  const ir::ValueId c1 = n.conv("c1", n.x);
  const ir::ValueId sum = n.b.node("Add", "add", {c1, n.x});
  n.b.output(n.b.node("Clip", "clip", {sum, n.scalar("lo", -1.0f)}));
  EXPECT_EQ(n.fuse_and_compare(), 1);
  const ir::Node& conv = n.node_named("c1");
  EXPECT_EQ(conv.inputs.size(), 4u);  // the residual
  EXPECT_EQ(conv.attrs.get_string("kiln_activation"), "Clip");
  EXPECT_EQ(conv.attrs.get_float("kiln_clip_min"), -1.0f);
  EXPECT_FALSE(conv.attrs.has("kiln_clip_max"));
}

TEST(CpuActivationFusion, LeavesWhatItCannotTake) {
  Net n;
  // c1's output is read by the Sigmoid, the Mul and an output: no SiLU.
  const ir::ValueId c1 = n.conv("c1", n.x);
  const ir::ValueId s1 = n.b.node("Sigmoid", "s1", {c1});
  const ir::ValueId m1 = n.b.node("Mul", "m1", {c1, s1});
  n.b.output(c1);
  // c2's Sigmoid is read by the Mul and an output.
  const ir::ValueId c2 = n.conv("c2", m1);
  const ir::ValueId s2 = n.b.node("Sigmoid", "s2", {c2});
  const ir::ValueId m2 = n.b.node("Mul", "m2", {c2, s2});
  n.b.output(s2);
  // c3 is multiplied by another tensor's sigmoid.
  const ir::ValueId c3 = n.conv("c3", m2);
  const ir::ValueId other = n.b.node("Sigmoid", "s3", {m2});
  const ir::ValueId m3 = n.b.node("Sigmoid", "unrelated", {c3});
  const ir::ValueId m4 = n.b.node("Mul", "m3", {m3, other});
  // c4's Clip has a computed bound; c5's a NaN bound; c6's output is a graph output.
  const ir::ValueId c4 = n.conv("c4", m4);
  const ir::ValueId bound = n.b.node("Sigmoid", "bound", {n.scalar("z", 0.5f)});
  const ir::ValueId k4 = n.b.node("Clip", "k4", {c4, bound});
  const ir::ValueId c5 = n.conv("c5", k4);
  const ir::ValueId k5 = n.b.node("Clip", "k5", {c5, n.scalar("nan", std::numeric_limits<float>::quiet_NaN())});
  const ir::ValueId c6 = n.conv("c6", k5);
  n.b.output(c6);
  n.b.output(n.b.node("Tanh", "t6", {c6}));
  // Only c3 -> Sigmoid "unrelated" fuses (a plain Sigmoid); nothing else.
  EXPECT_EQ(n.fuse_and_compare(), 1);
  EXPECT_EQ(n.node_named("c3").attrs.get_string("kiln_activation"), "Sigmoid");
  for (const char* name : {"c1", "c2", "c4", "c5", "c6"}) {
    EXPECT_FALSE(n.node_named(name).attrs.has("kiln_activation")) << name;
  }
}

}  // namespace
}  // namespace kiln::passes
