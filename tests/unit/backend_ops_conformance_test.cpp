// Backend-ops conformance: every (op, backend) kernel registration, for each dtype it claims, runs
// one-layer engines built directly from an IR graph (not through ONNX) on small inputs and
// matches the cpu backend, the reference, within a per-dtype tolerance (times the case's scale).
// Cuda pairs run where a GPU is (GTEST_SKIP elsewhere; without one, each case the cuda
// registrations claim is still built for sm_90 and load-checked); cpu pairs check that the
// reference builds and runs what its registrations claim. After ggml's test-backend-ops: the ops
// come from the registry, not a list. KILN_CONFORMANCE_VERBOSE=1 prints the dtypes each case ran in.
//
// An op's cases are the ones registered for it (backend_ops_cases.hpp says how; the tables are
// tests/unit/backend_ops_cases_*.cpp), else the default case: the op's minimum number of inputs,
// each [2, 3, 4] and random in the dtype under test, and its minimum number of outputs, with no
// attributes. A dtype the op's own rules refuse (its infer function) is skipped as the op's
// semantics, not the kernel's; a case on a backend whose registration does not take its layer
// (Backend::why_unsupported: dtypes, a layer check such as MaxPool's Indices on cuda) is skipped
// there.
//
// The test fails when a registered op runs no case and is not in uncovered_ops() below, so a newly
// registered kernel needs a case (or a listed reason); when a registered case is refused for every
// dtype it tries, or its engine has no layer of its op (folded at build time), since it then tests
// nothing; and when an explicit case's inputs are outside the op's domain at run time.
//
// Ops not covered, and why (uncovered_ops()):
//   - Plugin, PluginDataDependent: need a registered plugin (tests/unit/plugin_registry_test.cpp
//     and tests/python/test_plugins.py cover them).
// The builder's own FusedGroup and FusedAttention are covered by cases that write their
// attributes as the builder does (backend_ops_cases_nn.cpp).
#include <gtest/gtest.h>

#if KILN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend_ops_cases.hpp"
#include "backends/backend_registry.hpp"
#include "base/half.hpp"
#include "builder/build_from_graph.hpp"
#include "format/engine_io.hpp"
#include "graph_test_builder.hpp"
#include "kiln/builder.hpp"
#include "kiln/runtime.hpp"
#include "ops/op_registry.hpp"

namespace kiln {
namespace {

using conformance::CaseInput;
using conformance::OpCase;

// Registered ops no case runs, each with the reason. Any other op a backend registers a kernel for
// that runs no case fails the test.
const std::map<std::string, std::string>& uncovered_ops() {
  static const std::map<std::string, std::string> ops = {
      {"Plugin",
       "needs a registered plugin (plugin_registry_test.cpp and test_plugins.py cover it)"},
      {"PluginDataDependent",
       "needs a registered plugin (plugin_registry_test.cpp and test_plugins.py cover it)"},
  };
  return ops;
}

// dtypes the conformance cases try, where a registration claims them.
const std::vector<DType> kCandidateDTypes = {DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                                             DType::kFloat64, DType::kInt32,   DType::kInt64,
                                             DType::kInt8,    DType::kUInt8,   DType::kBool};

// The case of an op without registered cases.
OpCase default_case(const ops::OpDef& def) {
  OpCase c;
  for (int i = 0; i < def.min_inputs; ++i) c.inputs.push_back(conformance::input({2, 3, 4}));
  c.outputs = static_cast<size_t>(def.min_outputs);
  return c;
}

// Whether `support` takes `dtype` for every tensor and input 0 (the cheap pre-check; the layer
// itself is asked with why_unsupported once built).
bool claims_dtype(const backends::KernelSupport& support, DType dtype) {
  if (!support.every_tensor.contains(dtype)) return false;
  for (const backends::InputDTypes& rule : support.inputs)
    for (int i : rule.inputs)
      if (i == 0 && !rule.dtypes.contains(dtype)) return false;
  return true;
}

// A seed from the case's label (FNV-1a), so each case's values stay put when others are added.
uint32_t seed_of(const std::string& label) {
  uint32_t hash = 2166136261u;
  for (const char ch : label) hash = (hash ^ static_cast<uint8_t>(ch)) * 16777619u;
  return hash;
}

double element(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kFloat32:
      return t.data<float>()[i];
    case DType::kFloat64:
      return t.data<double>()[i];
    case DType::kFloat16:
      return half_to_float(t.data<uint16_t>()[i]);
    case DType::kBFloat16:
      return bfloat16_to_float(t.data<uint16_t>()[i]);
    case DType::kInt32:
      return t.data<int32_t>()[i];
    case DType::kInt64:
      return static_cast<double>(t.data<int64_t>()[i]);
    case DType::kInt8:
      return t.data<int8_t>()[i];
    case DType::kInt16:
      return t.data<int16_t>()[i];
    case DType::kUInt16:
      return t.data<uint16_t>()[i];
    case DType::kUInt8:
    case DType::kBool:
      return t.data<uint8_t>()[i];
    default:
      return 0.0;
  }
}

// The per-dtype tolerance: |got - want| <= tol * (1 + |want|).
double tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 1e-4;
    case DType::kFloat64:
      return 1e-9;
    case DType::kFloat16:
      return 5e-3;
    case DType::kBFloat16:
      return 3e-2;
    default:
      return 0.0;
  }
}

// One case's graph and the values of its graph inputs.
struct CaseGraph {
  ir::Graph graph;
  std::vector<HostTensor> inputs;
  std::vector<std::string> input_names;
};

CaseGraph make_case_graph(const std::string& op, const OpCase& c, DType dtype, std::mt19937& rng) {
  testing::GraphBuilder b;
  CaseGraph made;
  std::vector<ir::ValueId> ids;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const CaseInput& in = c.inputs[i];
    if (in.kind == CaseInput::Kind::kAbsent) {
      ids.push_back(ir::kNoValue);
      continue;
    }
    HostTensor t(in.dtype.value_or(dtype), in.shape);
    if (in.fill) {
      in.fill(t, rng);
    } else {
      conformance::random_values(t, rng);
    }
    if (in.kind == CaseInput::Kind::kConstant) {
      ids.push_back(b.constant(std::string("c").append(std::to_string(i)), std::move(t)));
      continue;
    }
    const std::string name = std::string("x").append(std::to_string(i));
    Shape declared = in.shape;
    for (size_t d : in.dynamic_dims) declared.at(d) = kDynamicDim;
    ids.push_back(b.input(name, declared, t.dtype));
    made.inputs.push_back(std::move(t));
    made.input_names.push_back(name);
  }
  for (ir::ValueId out : b.node_n(op, "the_node", ids, c.outputs, c.attrs)) b.output(out);
  made.graph = std::move(b.graph);
  return made;
}

format::EngineModel build_model(const CaseGraph& c, const std::string& target,
                                const std::string& label) {
  BuilderConfig config;
  config.target = target;
  return builder::build_engine_model(c.graph, config, std::string("conformance:").append(label));
}

std::vector<Tensor> run_engine(const std::vector<uint8_t>& bytes, const CaseGraph& c) {
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::vector<NamedTensor> inputs;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    inputs.push_back(
        NamedTensor{c.input_names[i], TensorRef{c.inputs[i].dtype, c.inputs[i].shape,
                                                const_cast<uint8_t*>(c.inputs[i].bytes.data())}});
  }
  return context.execute(inputs);
}

// Compares `got` (the backend's) with `want` (the cpu's); "" when they match.
std::string compare(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                    double tolerance_scale) {
  if (got.size() != want.size()) return "output count differs";
  for (size_t o = 0; o < got.size(); ++o) {
    std::ostringstream where;
    where << "output " << o;
    if (got[o].shape != want[o].shape || got[o].dtype != want[o].dtype)
      return where.str() + " shape/dtype differs";
    const double tol = tolerance(want[o].dtype) * tolerance_scale;
    for (int64_t i = 0; i < want[o].numel(); ++i) {
      const double g = element(got[o], i), w = element(want[o], i);
      if (g == w || (std::isnan(w) && std::isnan(g))) continue;  // equal infinities too
      if (!(std::fabs(g - w) <= tol * (1.0 + std::fabs(w)))) {
        where << " element " << i << ": " << g << " vs cpu " << w;
        return where.str();
      }
    }
  }
  return "";
}

const format::Layer* find_layer(const format::EngineModel& model, const std::string& op) {
  for (const format::Layer& layer : model.layers)
    if (layer.op == op) return &layer;
  return nullptr;
}

std::string joined(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& name : names) list += " " + name;
  return list;
}

// What run_conformance does with each case the backend's registration claims.
enum class Mode {
  kRun,             // build it for the backend, run it and compare with the cpu's outputs
  kBuildOffDevice,  // build it for the backend's target without a device (cuda: sm_90)
};

// The result of one case on the backend, after the cpu reference ran: "" when it passes.
std::string check_on_backend(const std::string& backend_name, Mode mode, const CaseGraph& graph,
                             const std::vector<Tensor>& want, const OpCase& spec,
                             const std::string& label) {
  BuilderConfig config;
  config.target = backend_name;
  if (mode == Mode::kBuildOffDevice)
    config.cuda_arch = 90;  // then the build checks what a load checks
  try {
    const std::vector<uint8_t> engine =
        builder::build_engine_from_graph(graph.graph, config, "conformance:" + label);
    if (mode == Mode::kBuildOffDevice) return "";
    return compare(run_engine(engine, graph), want, spec.tolerance_scale);
  } catch (const Error& e) {
    return "claimed by the registration, but the " + backend_name +
           " build or run fails: " + e.what();
  }
}

// Runs every case of every op `backend_name` registers a kernel for (see the top of the file);
// returns the number of (op, case, dtype) runs. KILN_CONFORMANCE_VERBOSE=1 prints each case's
// dtypes.
size_t run_conformance(const std::string& backend_name, Mode mode) {
  const backends::Backend* backend = backends::find_backend(backend_name);
  if (!backend) return 0;
  for (const std::string& op : conformance::duplicate_case_registrations()) {
    ADD_FAILURE() << "conformance cases for op " << op
                  << " are registered twice (tests/unit/backend_ops_cases_*.cpp)";
  }
  if (backend_name == "cpu") {  // every op has a cpu kernel: cases for another name are misspelt
    const std::vector<std::string> ops = backend->kernel_ops();
    for (const auto& [op, cases] : conformance::registered_op_cases()) {
      if (std::find(ops.begin(), ops.end(), op) == ops.end()) {
        ADD_FAILURE() << "conformance cases are registered for op " << op
                      << ", which has no cpu kernel";
      }
    }
  }
  const bool verbose = std::getenv("KILN_CONFORMANCE_VERBOSE") != nullptr;
  size_t ran = 0;
  std::vector<std::string> not_covered, listed;
  for (const std::string& op : backend->kernel_ops()) {
    const ops::OpDef* def = ops::find_op(op);
    if (def == nullptr) {
      ADD_FAILURE() << backend_name << " registers a kernel for op " << op
                    << ", which no OpDef defines";
      continue;
    }
    const backends::KernelSupport* support = backend->kernel_support(op);
    if (support == nullptr) {
      ADD_FAILURE() << backend_name << " lists op " << op << " but has no KernelSupport for it";
      continue;
    }
    const auto registered = conformance::registered_op_cases().find(op);
    const bool has_cases = registered != conformance::registered_op_cases().end();
    if (uncovered_ops().contains(op)) {
      if (has_cases)
        ADD_FAILURE() << "op " << op
                      << " has conformance cases but is also in uncovered_ops(): remove it there";
      listed.push_back(op);
      continue;
    }
    const std::vector<OpCase> cases =
        has_cases ? registered->second : std::vector<OpCase>{default_case(*def)};
    bool covered = false;
    std::string first_refusal;
    for (const OpCase& op_case : cases) {
      const std::string name = op + (op_case.variant.empty() ? "" : "/" + op_case.variant);
      bool built = false;
      std::string case_refusal, ran_dtypes;
      for (const DType dtype : kCandidateDTypes) {
        const auto& only = op_case.dtypes;
        if (!only.empty() && std::find(only.begin(), only.end(), dtype) == only.end()) continue;
        if (!claims_dtype(*support, dtype)) continue;
        OpCase spec = op_case;
        if (spec.for_dtype) spec.for_dtype(spec, dtype);
        const std::string label = name + " " + std::string(dtype_name(dtype));
        std::mt19937 rng(seed_of(label));
        const CaseGraph graph = make_case_graph(op, spec, dtype, rng);
        format::EngineModel reference;
        try {
          reference = build_model(graph, "cpu", label);
        } catch (const Error& e) {
          if (case_refusal.empty()) case_refusal = std::string(dtype_name(dtype)) + ": " + e.what();
          continue;  // the op's semantics refuse this dtype (or arity, shapes) for this case
        }
        built = true;
        SCOPED_TRACE(backend_name + " " + label);
        const format::Layer* layer = find_layer(reference, op);
        if (layer == nullptr) {
          ADD_FAILURE()
              << "the engine has no " << op
              << " layer (folded or removed at build time), so the case "
              << "tests nothing: make an input a graph input (or its output larger than 16 MiB)";
          continue;
        }
        if (backend_name != "cpu" && !backend->why_unsupported(reference, *layer).empty()) {
          continue;  // the registration does not take this layer
        }
        std::vector<Tensor> want;
        try {
          want = run_engine(format::write_engine(reference), graph);
        } catch (const Error& e) {
          // Random values outside the default case's domain: the op needs cases of its own.
          if (!has_cases && e.code() == ErrorCode::kInvalidArgument) {
            if (first_refusal.empty()) first_refusal = e.what();
            continue;
          }
          ADD_FAILURE() << "the cpu reference fails: " << e.what();
          continue;
        }
        covered = true;
        ++ran;
        ran_dtypes += " " + std::string(dtype_name(dtype));
        if (backend_name != "cpu") {
          EXPECT_EQ(check_on_backend(backend_name, mode, graph, want, spec, label), "");
        }
      }
      if (has_cases && !built && !case_refusal.empty()) {
        ADD_FAILURE() << "conformance case " << name
                      << " is refused in every dtype it tries, so it tests nothing; "
                      << "first refusal: " << case_refusal;
      }
      if (first_refusal.empty()) first_refusal = case_refusal;
      if (verbose) {
        std::cout << "  " << name << ":" << (ran_dtypes.empty() ? " (none)" : ran_dtypes)
                  << (case_refusal.empty() ? "" : "; first refusal " + case_refusal) << "\n";
      }
    }
    if (!covered) {
      not_covered.push_back(op);
      ADD_FAILURE()
          << "op " << op << " has a " << backend_name
          << " kernel but no conformance case ran for it"
          << (first_refusal.empty() ? "" : " (" + first_refusal + ")")
          << ": register cases for it (tests/unit/backend_ops_cases.hpp says how, e.g. in a "
          << "tests/unit/backend_ops_cases_<family>.cpp), or list it with the reason in "
             "uncovered_ops() in "
          << "tests/unit/backend_ops_conformance_test.cpp";
    }
  }
  std::cout << backend_name << (mode == Mode::kBuildOffDevice ? " (built off-device)" : "") << ": "
            << ran << " (op, case, dtype) cases ran; not covered (" << not_covered.size()
            << "):" << joined(not_covered) << "; listed as uncovered (" << listed.size()
            << "):" << joined(listed) << "\n";
  return ran;
}

// The floors catch cases that stop running (a generator, a registration or a builder change that
// regressed): raise them when cases are added. The cuda count is what its registrations claim of
// the cases (the same on or off a device).
constexpr size_t kCpuCaseFloor = 1114;
// 690 since the elementwise and reduction registrations stopped claiming float64, int8, uint8 and
// bool cases their kernels refuse (the first GPU run of this test found 97 such claims).
constexpr size_t kCudaCaseFloor = 690;

TEST(BackendOpsConformance, CpuKernelsRunWhatTheirRegistrationsClaim) {
  if (!backends::find_backend("cpu")) GTEST_SKIP() << "this kiln has no cpu backend";
  EXPECT_GE(run_conformance("cpu", Mode::kRun), kCpuCaseFloor);
}

TEST(BackendOpsConformance, CudaKernelsMatchTheCpuReference) {
  if (!backends::find_backend("cuda")) GTEST_SKIP() << "this kiln has no cuda backend";
#if KILN_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA GPU here";
  EXPECT_GE(run_conformance("cuda", Mode::kRun), kCudaCaseFloor);
#else
  GTEST_SKIP() << "built without CUDA";
#endif
}

// Without a GPU (CI), what can be checked of the cuda cases is that each claimed one builds for an
// sm_90 target and passes the checks a load makes off the device (kernel attribute checks,
// generated kernels compiled by NVRTC through the kernel cache).
TEST(BackendOpsConformance, CudaBuildsWhatItsRegistrationsClaim) {
  if (!backends::find_backend("cuda")) GTEST_SKIP() << "this kiln has no cuda backend";
#ifndef KILN_EXPECT_NVRTC
  GTEST_SKIP() << "no NVRTC here to compile the generated kernels of cuda builds";
#else
  EXPECT_GE(run_conformance("cuda", Mode::kBuildOffDevice), kCudaCaseFloor);
#endif
}

}  // namespace
}  // namespace kiln
