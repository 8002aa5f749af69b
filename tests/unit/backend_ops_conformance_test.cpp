// Backend-ops conformance: every (op, backend) kernel registration, for each dtype it claims, runs
// a one-layer engine built directly from an IR graph (not through ONNX) on small random inputs and
// matches the cpu backend, the reference, within a per-dtype tolerance. Cuda pairs run where a GPU
// is (GTEST_SKIP elsewhere); cpu pairs check that the reference builds and runs what its
// registrations claim. After ggml's test-backend-ops: cases come from the registry, not a list.
//
// A case is the op's minimum number of inputs, each of shape [2, 3, 4] and the claimed dtype, and
// its minimum number of outputs, with no attributes (kCases gives ops that need other inputs or
// attributes their own). Where the op's own rules refuse such a case (its infer function refuses
// the dtype, the arity or the shapes) the case is skipped as the op's semantics, not the kernel's.
// Ops not covered, and why:
//   - Plugin, PluginDataDependent: need a registered plugin (tests/unit/plugin_registry_test.cpp
//     and tests/python/test_plugins.py cover them).
//   - GatherElements, ScatterElements, ArrayFeatureExtractor: their index inputs need in-range
//     values (random ones are refused at run time, kInvalidArgument, and counted as not covered).
//   - every op whose default case its infer refuses and that has no kCases entry yet: reported
//     by name in the test's output ("not covered"), e.g. ops with index, shape or weight inputs
//     (Gather, Reshape, Conv, ...) that a per-op generator still has to give.
#include <gtest/gtest.h>

#if KILN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include <cmath>
#include <iostream>
#include <optional>
#include <sstream>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/backend_registry.hpp"
#include "base/half.hpp"
#include "builder/build_from_graph.hpp"
#include "graph_test_builder.hpp"
#include "kiln/builder.hpp"
#include "kiln/runtime.hpp"
#include "ops/op_registry.hpp"

namespace kiln {
namespace {

using testing::GraphBuilder;

// dtypes the conformance cases try, where a registration claims them.
const std::vector<DType> kCandidateDTypes = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64,
                                             DType::kInt32,   DType::kInt64,   DType::kInt8,     DType::kUInt8,
                                             DType::kBool};

// A per-op case: its inputs (shape and, when fixed, dtype: e.g. int64 axes) and attributes.
struct CaseInput {
  Shape shape;
  std::optional<DType> dtype = std::nullopt;  // nullopt: the claimed dtype under test
  std::function<void(HostTensor&)> fill = nullptr;  // optional: fixed values (indices, shapes)
};
struct OpCase {
  std::vector<CaseInput> inputs;
  size_t outputs = 1;
  AttributeMap attrs = {};
};

// Ops whose default case does not fit: their own inputs and attributes.
const std::map<std::string, OpCase>& op_cases() {
  static const std::map<std::string, OpCase> cases = [] {
    std::map<std::string, OpCase> c;
    const auto fixed_i64 = [](Shape shape, std::vector<int64_t> values) {
      return CaseInput{shape, DType::kInt64, [values](HostTensor& t) {
                         std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(int64_t));
                       }};
    };
    c["MatMul"] = {{{{2, 3, 4}}, {{2, 4, 5}}}};
    c["Gemm"] = {{{{3, 4}}, {{4, 5}}}};
    c["Transpose"] = {{{{2, 3, 4}}}, 1, testing::perm({2, 0, 1})};
    c["Reshape"] = {{{{2, 3, 4}}, fixed_i64({2}, {6, 4})}};
    c["Unsqueeze"] = {{{{2, 3, 4}}, fixed_i64({1}, {0})}};
    c["Squeeze"] = {{{{2, 1, 4}}, fixed_i64({1}, {1})}};
    c["Gather"] = {{{{2, 3, 4}}, fixed_i64({2}, {1, 0})}};
    c["ReduceSum"] = {{{{2, 3, 4}}, fixed_i64({1}, {1})}};
    c["ReduceMean"] = {{{{2, 3, 4}}, fixed_i64({1}, {1})}};
    c["ReduceMax"] = {{{{2, 3, 4}}, fixed_i64({1}, {1})}};
    c["Concat"] = {{{{2, 3, 4}}, {{2, 3, 4}}}, 1, testing::attrs_of({{"axis", Attribute::of_int(1)}})};
    c["Softmax"] = {{{{2, 3, 4}}}, 1, testing::attrs_of({{"axis", Attribute::of_int(-1)}})};
    c["LogSoftmax"] = {{{{2, 3, 4}}}, 1, testing::attrs_of({{"axis", Attribute::of_int(-1)}})};
    c["Where"] = {{{{2, 3, 4}, DType::kBool}, {{2, 3, 4}}, {{2, 3, 4}}}};
    return c;
  }();
  return cases;
}

void fill_random(HostTensor& t, std::mt19937& rng) {
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small(1, 5);  // no zeros: integer Div/Mod stay defined
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float r = real(rng);
    switch (t.dtype) {
      case DType::kFloat32: t.data<float>()[i] = r; break;
      case DType::kFloat64: t.data<double>()[i] = r; break;
      case DType::kFloat16: t.data<uint16_t>()[i] = float_to_half(r); break;
      case DType::kBFloat16: t.data<uint16_t>()[i] = float_to_bfloat16(r); break;
      case DType::kInt32: t.data<int32_t>()[i] = small(rng); break;
      case DType::kInt64: t.data<int64_t>()[i] = small(rng); break;
      case DType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(small(rng)); break;
      case DType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(small(rng)); break;
      case DType::kBool: t.data<uint8_t>()[i] = static_cast<uint8_t>(small(rng) > 3); break;
      default: std::memset(t.bytes.data(), 0, t.bytes.size());
    }
  }
}

double element(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kFloat32: return t.data<float>()[i];
    case DType::kFloat64: return t.data<double>()[i];
    case DType::kFloat16: return half_to_float(t.data<uint16_t>()[i]);
    case DType::kBFloat16: return bfloat16_to_float(t.data<uint16_t>()[i]);
    case DType::kInt32: return t.data<int32_t>()[i];
    case DType::kInt64: return static_cast<double>(t.data<int64_t>()[i]);
    case DType::kInt8: return t.data<int8_t>()[i];
    case DType::kInt16: return t.data<int16_t>()[i];
    case DType::kUInt8: case DType::kBool: return t.data<uint8_t>()[i];
    default: return 0.0;
  }
}

// The per-case tolerance: |got - want| <= tol * (1 + |want|).
double tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 1e-4;
    case DType::kFloat64: return 1e-9;
    case DType::kFloat16: return 5e-3;
    case DType::kBFloat16: return 3e-2;
    default: return 0.0;
  }
}

struct BuiltCase {
  std::vector<uint8_t> engine;
  std::vector<HostTensor> inputs;
  std::vector<std::string> input_names;
};

// The one-layer case of `op` in `dtype` for `target`; throws what the builder throws.
BuiltCase build_case(const std::string& op, const ops::OpDef& def, DType dtype, const std::string& target,
                     std::mt19937& rng) {
  OpCase c;
  if (auto it = op_cases().find(op); it != op_cases().end()) {
    c = it->second;
  } else {
    for (int i = 0; i < def.min_inputs; ++i) c.inputs.push_back({{2, 3, 4}, std::nullopt, nullptr});
    c.outputs = static_cast<size_t>(def.min_outputs);
  }
  GraphBuilder b;
  BuiltCase built;
  std::vector<ir::ValueId> ids;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const CaseInput& in = c.inputs[i];
    HostTensor t(in.dtype.value_or(dtype), in.shape);
    if (in.fill) {
      in.fill(t);
      ids.push_back(b.constant(std::string("c").append(std::to_string(i)), std::move(t)));
      continue;
    }
    fill_random(t, rng);
    const std::string name = std::string("x").append(std::to_string(i));
    ids.push_back(b.input(name, in.shape, t.dtype));
    built.inputs.push_back(std::move(t));
    built.input_names.push_back(name);
  }
  for (ir::ValueId out : b.node_n(op, "the_node", ids, c.outputs, c.attrs)) b.output(out);
  BuilderConfig config;
  config.target = target;
  built.engine = builder::build_engine_from_graph(std::move(b.graph), config, std::string("conformance:").append(op));
  return built;
}

std::vector<Tensor> run_case(const BuiltCase& c) {
  Engine engine = Engine::load_bytes(c.engine.data(), c.engine.size());
  ExecutionContext context = engine.create_context();
  std::vector<NamedTensor> inputs;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    inputs.push_back(NamedTensor{c.input_names[i],
                                 TensorRef{c.inputs[i].dtype, c.inputs[i].shape, const_cast<uint8_t*>(c.inputs[i].bytes.data())}});
  }
  return context.execute(inputs);
}

// Compares `got` (the backend's) with `want` (the cpu's); "" when they match.
std::string compare(const std::vector<Tensor>& got, const std::vector<Tensor>& want) {
  if (got.size() != want.size()) return "output count differs";
  for (size_t o = 0; o < got.size(); ++o) {
    std::ostringstream where;
    where << "output " << o;
    if (got[o].shape != want[o].shape || got[o].dtype != want[o].dtype) return where.str() + " shape/dtype differs";
    const double tol = tolerance(want[o].dtype);
    for (int64_t i = 0; i < want[o].numel(); ++i) {
      const double g = element(got[o], i), w = element(want[o], i);
      if (std::isnan(w) && std::isnan(g)) continue;
      if (!(std::fabs(g - w) <= tol * (1.0 + std::fabs(w)))) {
        where << " element " << i << ": " << g << " vs cpu " << w;
        return where.str();
      }
    }
  }
  return "";
}

void run_conformance(const std::string& backend_name) {
  const backends::Backend* backend = backends::find_backend(backend_name);
  if (!backend) GTEST_SKIP() << "this kiln has no " << backend_name << " backend";
  std::mt19937 rng(12);
  size_t ran = 0;
  std::vector<std::string> not_covered;
  for (const std::string& op : backend->kernel_ops()) {
    if (op == "Plugin" || op == "PluginDataDependent") continue;  // need a plugin: see the list above
    const ops::OpDef* def = ops::find_op(op);
    ASSERT_NE(def, nullptr) << backend_name << " registers a kernel for op " << op << ", which no OpDef defines";
    const backends::KernelSupport* support = backend->kernel_support(op);
    ASSERT_NE(support, nullptr);
    bool covered = false;
    for (const DType dtype : kCandidateDTypes) {
      if (!support->every_tensor.contains(dtype)) continue;
      bool claimed = true;
      for (const backends::InputDTypes& rule : support->inputs)
        for (int i : rule.inputs) claimed = claimed && (i != 0 || rule.dtypes.contains(dtype));
      if (!claimed) continue;
      std::mt19937 case_rng(rng());
      BuiltCase reference;
      try {
        reference = build_case(op, *def, dtype, "cpu", case_rng);
      } catch (const Error&) {
        continue;  // the op's semantics refuse this case (dtype, arity or shapes)
      }
      covered = true;
      std::ostringstream trace;
      trace << backend_name << " " << op << " " << dtype_name(dtype);
      SCOPED_TRACE(trace.str());
      std::vector<Tensor> want;
      try {
        want = run_case(reference);
      } catch (const Error& e) {
        // Random values outside the op's domain (indices out of range): a per-op generator's job.
        if (e.code() == ErrorCode::kInvalidArgument) {
          covered = false;
          continue;
        }
        ADD_FAILURE() << "the cpu reference fails: " << e.what();
        continue;
      }
      if (backend_name != "cpu") {
        BuiltCase on_backend = reference;
        try {
          std::mt19937 rebuild_rng(0);
          BuiltCase built = build_case(op, *def, dtype, backend_name, rebuild_rng);
          on_backend.engine = std::move(built.engine);  // same inputs as the reference
        } catch (const Error& e) {
          ADD_FAILURE() << "claimed by the registration, but the build refuses: " << e.what();
          continue;
        }
        std::vector<Tensor> got;
        try {
          got = run_case(on_backend);
        } catch (const Error& e) {
          ADD_FAILURE() << "the " << backend_name << " engine fails: " << e.what();
          continue;
        }
        const std::string mismatch = compare(got, want);
        EXPECT_EQ(mismatch, "");
      }
      ++ran;
    }
    if (!covered) not_covered.push_back(op);
  }
  std::ostringstream list;
  for (const std::string& op : not_covered) list << " " << op;
  std::cout << backend_name << ": " << ran << " (op, dtype) cases ran; not covered (" << not_covered.size()
            << "):" << list.str() << "\n";
  // The registry is large: most of it must be covered, or the generators have regressed.
  EXPECT_GE(ran, backend_name == "cpu" ? 150u : 60u);
}

TEST(BackendOpsConformance, CpuKernelsRunWhatTheirRegistrationsClaim) { run_conformance("cpu"); }

TEST(BackendOpsConformance, CudaKernelsMatchTheCpuReference) {
  if (!backends::find_backend("cuda")) GTEST_SKIP() << "this kiln has no cuda backend";
#if KILN_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA GPU here";
  run_conformance("cuda");
#else
  GTEST_SKIP() << "built without CUDA";
#endif
}

}  // namespace
}  // namespace kiln
