// libkiln_plugins.so (plugins/) through the C ABI, without the builder: its creators register in
// namespace "kiln", instances store their fields with defaults, infer gives the declared shapes,
// and, where a GPU is present, execute_cuda gives what execute_cpu gives (the CUDA kernels are not
// reachable through engines yet: CUDA builds refuse plugin layers). The CPU kernels are compared
// with ONNX Runtime and NumPy in tests/python/test_kiln_plugins_*.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kiln/plugin.h"
#include "kiln/runtime.hpp"
#include "plugins/plugin_registry.hpp"

#if KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace kiln {
namespace {

struct Tensor {
  kiln_dtype dtype = KILN_FLOAT32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  bool absent = false;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(bytes.data());
  }
};

size_t dtype_size(kiln_dtype dtype) {
  return dtype == KILN_INT64 ? 8 : dtype == KILN_FLOAT16 ? 2 : 4;
}

template <typename T>
Tensor tensor(kiln_dtype dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  Tensor t{dtype, std::move(shape), {}, false};
  t.bytes.resize(values.size() * sizeof(T));
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  return t;
}

[[maybe_unused]] Tensor absent() {
  Tensor t;
  t.absent = true;
  return t;
}

[[maybe_unused]] std::vector<float> uniform(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

kiln_plugin_field int_field(const char* name, int64_t v) {
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_INT;
  f.i = v;
  return f;
}
kiln_plugin_field float_field(const char* name, float v) {
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_FLOAT;
  f.f = v;
  return f;
}
[[maybe_unused]] kiln_plugin_field string_field(const char* name, const char* v) {
  kiln_plugin_field f{};
  f.name = name;
  f.kind = KILN_PLUGIN_FIELD_STRING;
  f.s = v;
  return f;
}

const kiln_plugin_creator& creator(const char* name) {
  load_plugin_library(KILN_PLUGINS_PATH);
  const plugins::RegisteredCreator* found = plugins::plugin_registry().find("kiln", name, 1);
  if (!found) throw std::runtime_error(std::string("kiln::") + name + " v1 is not registered");
  return *found->creator;
}

class Instance {
 public:
  Instance(const char* name, const std::vector<kiln_plugin_field>& fields) : c_(creator(name)) {
    kiln_plugin_error error{};
    const kiln_status status =
        c_.create(fields.data(), static_cast<int32_t>(fields.size()), &self_, &error);
    if (status != KILN_OK) throw std::runtime_error(std::string("create: ") + error.message);
  }
  ~Instance() { c_.destroy(self_); }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  const kiln_plugin_creator& c() const { return c_; }
  void* self() const { return self_; }

  static std::vector<kiln_plugin_tensor_desc> descs(std::vector<Tensor>& inputs) {
    std::vector<kiln_plugin_tensor_desc> d;
    for (Tensor& t : inputs) {
      d.push_back({t.dtype, t.absent ? -1 : static_cast<int32_t>(t.shape.size()), t.shape.data()});
    }
    return d;
  }

  // The outputs infer declares, allocated at their upper bounds.
  std::vector<Tensor> outputs(std::vector<Tensor>& inputs, int32_t count) const {
    std::vector<kiln_plugin_tensor_desc> in = descs(inputs);
    std::vector<kiln_plugin_output_desc> out(static_cast<size_t>(count));
    kiln_plugin_error error{};
    if (c_.infer(self_, in.data(), static_cast<int32_t>(in.size()), out.data(), count, &error) !=
        KILN_OK) {
      throw std::runtime_error(std::string("infer: ") + error.message);
    }
    std::vector<Tensor> result;
    for (const kiln_plugin_output_desc& o : out) {
      Tensor t;
      t.dtype = o.dtype;
      for (int32_t d = 0; d < o.ndim; ++d) {
        const kiln_plugin_dim& dim = o.dims[d];
        t.shape.push_back(dim.kind == KILN_PLUGIN_DIM_COPY ? inputs[dim.input].shape[dim.input_dim]
                                                           : dim.value);
      }
      t.bytes.assign(static_cast<size_t>(t.numel()) * dtype_size(t.dtype), 0);
      result.push_back(std::move(t));
    }
    return result;
  }

  int64_t workspace(kiln_plugin_backend backend, std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
    std::vector<kiln_plugin_tensor_desc> in = descs(inputs), out = descs(outputs);
    int64_t bytes = 0;
    kiln_plugin_error error{};
    EXPECT_EQ(c_.workspace(self_, backend, in.data(), static_cast<int32_t>(in.size()), out.data(),
                           static_cast<int32_t>(out.size()), &bytes, &error),
              KILN_OK)
        << error.message;
    return bytes;
  }

  std::vector<Tensor> run_cpu(std::vector<Tensor> inputs, int32_t count) const {
    std::vector<Tensor> outs = outputs(inputs, count);
    std::vector<unsigned char> scratch(static_cast<size_t>(workspace(KILN_PLUGIN_BACKEND_CPU, inputs, outs)) + 64);
    std::vector<kiln_plugin_tensor> in, out;
    for (Tensor& t : inputs) {
      in.push_back({t.dtype, t.absent ? -1 : static_cast<int32_t>(t.shape.size()), t.shape.data(),
                    t.absent ? nullptr : t.bytes.data()});
    }
    for (Tensor& t : outs) {
      out.push_back(
          {t.dtype, static_cast<int32_t>(t.shape.size()), t.shape.data(), t.bytes.data()});
    }
    kiln_plugin_error error{};
    const kiln_status status = c_.execute_cpu(self_, in.data(), static_cast<int32_t>(in.size()),
                                              out.data(), count, scratch.data(), &error);
    if (status != KILN_OK) throw std::runtime_error(std::string("execute_cpu: ") + error.message);
    for (Tensor& t : outs) t.bytes.resize(static_cast<size_t>(t.numel()) * dtype_size(t.dtype));
    return outs;
  }

#if KILN_WITH_CUDA
  std::vector<Tensor> run_cuda(std::vector<Tensor> inputs, int32_t count) const {
    std::vector<Tensor> outs = outputs(inputs, count);
    std::vector<void*> buffers;
    const auto device_copy = [&](const Tensor& t) -> void* {
      if (t.absent) return nullptr;
      void* p = nullptr;
      EXPECT_EQ(cudaMalloc(&p, t.bytes.size() + 16), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(p, t.bytes.data(), t.bytes.size(), cudaMemcpyHostToDevice), cudaSuccess);
      buffers.push_back(p);
      return p;
    };
    std::vector<kiln_plugin_tensor> in, out;
    for (Tensor& t : inputs) {
      in.push_back({t.dtype, t.absent ? -1 : static_cast<int32_t>(t.shape.size()), t.shape.data(),
                    device_copy(t)});
    }
    for (Tensor& t : outs) {
      out.push_back(
          {t.dtype, static_cast<int32_t>(t.shape.size()), t.shape.data(), device_copy(t)});
    }
    Tensor scratch_desc;
    scratch_desc.bytes.resize(static_cast<size_t>(workspace(KILN_PLUGIN_BACKEND_CUDA, inputs, outs)));
    void* scratch = device_copy(scratch_desc);
    cudaStream_t stream = nullptr;
    EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    kiln_plugin_error error{};
    const kiln_status status = c_.execute_cuda(self_, in.data(), static_cast<int32_t>(in.size()),
                                               out.data(), count, scratch, stream, &error);
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    cudaStreamDestroy(stream);
    for (size_t o = 0; o < outs.size(); ++o) {
      outs[o].bytes.resize(static_cast<size_t>(outs[o].numel()) * dtype_size(outs[o].dtype));
      EXPECT_EQ(cudaMemcpy(outs[o].bytes.data(), out[o].data, outs[o].bytes.size(),
                           cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
    for (void* p : buffers) cudaFree(p);
    if (status != KILN_OK) throw std::runtime_error(std::string("execute_cuda: ") + error.message);
    return outs;
  }
#endif

 private:
  const kiln_plugin_creator& c_;
  void* self_ = nullptr;
};

TEST(KilnPlugins, RegistersItsCreatorsInNamespaceKiln) {
  for (const char* name :
       {"NonMaxSuppression", "BatchedNMS", "BatchedNMSPadded", "RoiAlign", "DeformConv",
        "TorchvisionNms", "TorchvisionRoiAlign", "TorchvisionDeformConv2d"}) {
    const kiln_plugin_creator& c = creator(name);
    EXPECT_STREQ(c.plugin_namespace, "kiln");
    EXPECT_NE(c.execute_cpu, nullptr) << name;
#if KILN_WITH_CUDA
    EXPECT_NE(c.execute_cuda, nullptr) << name;
#else
    EXPECT_EQ(c.execute_cuda, nullptr) << name;  // no CUDA path declared: CUDA builds refuse it up front
#endif
  }
  EXPECT_TRUE(creator("NonMaxSuppression").data_dependent_shapes);
  EXPECT_TRUE(creator("BatchedNMS").data_dependent_shapes);
  EXPECT_FALSE(creator("BatchedNMSPadded").data_dependent_shapes);
}

TEST(KilnPlugins, StoredFieldsHaveTheDefaults) {
  Instance roi_align("RoiAlign", {int_field("output_height", 3)});
  const kiln_plugin_field* fields = nullptr;
  int32_t count = 0;
  kiln_plugin_error error{};
  ASSERT_EQ(roi_align.c().fields(roi_align.self(), &fields, &count, &error), KILN_OK);
  ASSERT_EQ(count, 6);
  EXPECT_STREQ(fields[0].name, "coordinate_transformation_mode");
  EXPECT_STREQ(fields[0].s, "half_pixel");
  EXPECT_STREQ(fields[1].s, "avg");
  EXPECT_EQ(fields[2].i, 3);
  EXPECT_EQ(fields[3].i, 1);
  EXPECT_FLOAT_EQ(fields[5].f, 1.0f);
}

TEST(KilnPlugins, DynamicSizesGiveAnUnknownBound) {
  Instance nms("BatchedNMS", {float_field("iou_threshold", 0.5f)});
  std::vector<int64_t> boxes{-1, 4}, scores{-1}, idxs{-1};
  const kiln_plugin_tensor_desc in[] = {{KILN_FLOAT32, 2, boxes.data()},
                                        {KILN_FLOAT32, 1, scores.data()},
                                        {KILN_INT64, 1, idxs.data()}};
  kiln_plugin_output_desc out{};
  kiln_plugin_error error{};
  ASSERT_EQ(nms.c().infer(nms.self(), in, 3, &out, 1, &error), KILN_OK) << error.message;
  EXPECT_EQ(out.dims[0].kind, KILN_PLUGIN_DIM_DATA_DEPENDENT);
  EXPECT_EQ(out.dims[0].value, 0);
}

TEST(KilnPlugins, Float16InputsComputeInFloat32) {
  // 0.5 / 1 / 2.5 are exact in float16 (0x3800, 0x3c00, 0x4100): a 1x1 RoiAlign of a constant plane
  // gives the constant back, in float16.
  Instance roi_align("RoiAlign", {});
  const auto out = roi_align.run_cpu(
      {tensor<uint16_t>(KILN_FLOAT16, {1, 1, 2, 2}, {0x4100, 0x4100, 0x4100, 0x4100}),
       tensor<uint16_t>(KILN_FLOAT16, {1, 4}, {0x0000, 0x0000, 0x3c00, 0x3c00}),
       tensor<int64_t>(KILN_INT64, {1}, {0})},
      1);
  ASSERT_EQ(out[0].shape, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(reinterpret_cast<const uint16_t*>(out[0].bytes.data())[0], 0x4100);
}

// The message a run gives, without the "execute_cpu: " / "execute_cuda: " prefix of Instance.
template <typename Run>
std::string failure_of(Run run) {
  try {
    run();
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    return message.substr(message.find(": ") + 2);
  }
  return "(no failure)";
}

std::vector<Tensor> roi_align_inputs(int64_t bad_batch) {
  return {tensor(KILN_FLOAT32, {2, 1, 4, 4}, uniform(32, -1, 1, 21)),
          tensor<float>(KILN_FLOAT32, {2, 4}, {0, 0, 2, 2, 1, 1, 3, 3}),
          tensor<int64_t>(KILN_INT64, {2}, {0, bad_batch})};
}

std::vector<Tensor> torchvision_roi_align_inputs(float bad_batch) {
  return {tensor(KILN_FLOAT32, {2, 1, 4, 4}, uniform(32, -1, 1, 22)),
          tensor<float>(KILN_FLOAT32, {2, 5}, {1, 0, 0, 2, 2, bad_batch, 1, 1, 3, 3})};
}

TEST(KilnPlugins, RoiAlignRefusesABatchIndexOutsideTheBatch) {
  Instance onnx("RoiAlign", {});
  EXPECT_EQ(failure_of([&] { onnx.run_cpu(roi_align_inputs(2), 1); }),
            "batch_indices[1] = 2 is outside [0, 2)");
  Instance torchvision("TorchvisionRoiAlign", {});
  EXPECT_EQ(failure_of([&] { torchvision.run_cpu(torchvision_roi_align_inputs(-1.0f), 1); }),
            "rois[1, 0] = -1.000000 is not a batch index in [0, 2)");
}

TEST(KilnPlugins, OnlyCudaKernelsAskForScratch) {
  // Only the CUDA kernels of NMS and RoiAlign use scratch: asked for the CPU backend's workspace
  // they want none in every build, and a library built without CUDA wants none for CUDA either.
  std::vector<Tensor> nms = {tensor(KILN_FLOAT32, {1, 3, 4}, std::vector<float>(12, 1.0f)),
                             tensor(KILN_FLOAT32, {1, 2, 3}, std::vector<float>(6, 0.5f))};
  Instance onnx_nms("NonMaxSuppression", {});
  std::vector<Tensor> nms_out = onnx_nms.outputs(nms, 1);
  EXPECT_EQ(onnx_nms.workspace(KILN_PLUGIN_BACKEND_CPU, nms, nms_out), 0);
  std::vector<Tensor> roi = roi_align_inputs(1);
  Instance roi_align("RoiAlign", {});
  std::vector<Tensor> roi_out = roi_align.outputs(roi, 1);
  EXPECT_EQ(roi_align.workspace(KILN_PLUGIN_BACKEND_CPU, roi, roi_out), 0);
#if !KILN_WITH_CUDA
  EXPECT_EQ(onnx_nms.workspace(KILN_PLUGIN_BACKEND_CUDA, nms, nms_out), 0);
  EXPECT_EQ(roi_align.workspace(KILN_PLUGIN_BACKEND_CUDA, roi, roi_out), 0);
#endif
}

#if KILN_WITH_CUDA

int gpu_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    if (gpu_count() == 0) GTEST_SKIP() << "no CUDA GPU here (cudaGetDeviceCount is 0)"; \
  } while (0)

void expect_same(const std::vector<Tensor>& cpu, const std::vector<Tensor>& gpu, float tolerance) {
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t o = 0; o < cpu.size(); ++o) {
    ASSERT_EQ(cpu[o].shape, gpu[o].shape) << "output " << o;
    if (cpu[o].dtype == KILN_FLOAT32) {
      const auto* a = reinterpret_cast<const float*>(cpu[o].bytes.data());
      const auto* b = reinterpret_cast<const float*>(gpu[o].bytes.data());
      for (int64_t i = 0; i < cpu[o].numel(); ++i) {
        ASSERT_NEAR(a[i], b[i], tolerance * (1 + std::fabs(a[i]))) << "output " << o << " at " << i;
      }
    } else {
      EXPECT_EQ(cpu[o].bytes, gpu[o].bytes) << "output " << o;
    }
  }
}

std::vector<float> boxes_xyxy(int64_t n, unsigned seed) {
  const std::vector<float> r = uniform(static_cast<size_t>(n) * 4, 0, 1, seed);
  std::vector<float> b(r.size());
  for (int64_t i = 0; i < n; ++i) {
    b[i * 4 + 0] = r[i * 4 + 0] * 20;
    b[i * 4 + 1] = r[i * 4 + 1] * 20;
    b[i * 4 + 2] = b[i * 4 + 0] + 1 + r[i * 4 + 2] * 6;
    b[i * 4 + 3] = b[i * 4 + 1] + 1 + r[i * 4 + 3] * 6;
  }
  return b;
}

TEST(KilnPluginsCuda, RoiAlignMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  for (const char* mode : {"avg", "max"}) {
    for (const char* coordinates : {"half_pixel", "output_half_pixel"}) {
      Instance op("RoiAlign", {string_field("mode", mode),
                               string_field("coordinate_transformation_mode", coordinates),
                               int_field("output_height", 3), int_field("output_width", 4),
                               float_field("spatial_scale", 0.5f)});
      std::vector<Tensor> in = {tensor(KILN_FLOAT32, {2, 3, 9, 11}, uniform(594, -1, 1, 1)),
                                tensor(KILN_FLOAT32, {5, 4}, boxes_xyxy(5, 2)),
                                tensor<int64_t>(KILN_INT64, {5}, {0, 1, 1, 0, 1})};
      expect_same(op.run_cpu(in, 1), op.run_cuda(in, 1), 1e-5f);
    }
  }
}

TEST(KilnPluginsCuda, DeformConvMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  Instance op("DeformConv", {int_field("group", 2), int_field("offset_group", 2)});
  std::vector<Tensor> in = {tensor(KILN_FLOAT32, {2, 4, 6, 7}, uniform(336, -1, 1, 3)),
                            tensor(KILN_FLOAT32, {6, 2, 3, 3}, uniform(108, -1, 1, 4)),
                            tensor(KILN_FLOAT32, {2, 36, 4, 5}, uniform(1440, -2, 2, 5)),
                            tensor(KILN_FLOAT32, {6}, uniform(6, -1, 1, 6)),
                            tensor(KILN_FLOAT32, {2, 18, 4, 5}, uniform(720, 0, 1, 7))};
  expect_same(op.run_cpu(in, 1), op.run_cuda(in, 1), 1e-4f);
  in[3] = absent();
  in.pop_back();
  expect_same(op.run_cpu(in, 1), op.run_cuda(in, 1), 1e-4f);
}

TEST(KilnPluginsCuda, NonMaxSuppressionMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  for (int64_t center : {0, 1}) {
    Instance op("NonMaxSuppression", {int_field("center_point_box", center)});
    std::vector<float> scores = uniform(2 * 3 * 60, 0, 1, 8);
    scores[5] = std::nanf("");
    scores[7] = scores[9];  // a tie
    std::vector<Tensor> in = {
        tensor(KILN_FLOAT32, {2, 60, 4}, boxes_xyxy(120, 9)),
        tensor(KILN_FLOAT32, {2, 3, 60}, scores), tensor<int64_t>(KILN_INT64, {1}, {7}),
        tensor<float>(KILN_FLOAT32, {1}, {0.3f}), tensor<float>(KILN_FLOAT32, {1}, {0.2f})};
    const auto cpu = op.run_cpu(in, 1);
    EXPECT_GT(cpu[0].shape[0], 0);
    expect_same(cpu, op.run_cuda(in, 1), 0);
  }
}

TEST(KilnPluginsCuda, BatchedNmsMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  std::vector<float> scores = uniform(300, 0, 1, 10);
  scores[3] = std::nanf("");
  scores[11] = scores[12];
  std::vector<int64_t> idxs(300);
  for (size_t i = 0; i < idxs.size(); ++i) idxs[i] = static_cast<int64_t>(i % 5);
  std::vector<Tensor> in = {tensor(KILN_FLOAT32, {300, 4}, boxes_xyxy(300, 11)),
                            tensor(KILN_FLOAT32, {300}, scores), tensor(KILN_INT64, {300}, idxs)};
  for (int64_t top_k : {-1, 0, 17}) {
    Instance op("BatchedNMS", {float_field("iou_threshold", 0.4f), int_field("top_k", top_k)});
    expect_same(op.run_cpu(in, 1), op.run_cuda(in, 1), 0);
    Instance padded("BatchedNMSPadded", {float_field("iou_threshold", 0.4f),
                                         int_field("max_output", top_k < 0 ? 400 : top_k)});
    expect_same(padded.run_cpu(in, 2), padded.run_cuda(in, 2), 0);
  }
  Instance empty("BatchedNMS", {float_field("iou_threshold", 0.4f)});
  std::vector<Tensor> none = {tensor<float>(KILN_FLOAT32, {0, 4}, {}),
                              tensor<float>(KILN_FLOAT32, {0}, {}),
                              tensor<int64_t>(KILN_INT64, {0}, {})};
  expect_same(empty.run_cpu(none, 1), empty.run_cuda(none, 1), 0);
}

TEST(KilnPluginsCuda, TorchvisionSignaturesMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  Instance nms("TorchvisionNms", {float_field("iou_threshold", 0.3f)});
  std::vector<Tensor> nms_in = {tensor(KILN_FLOAT32, {80, 4}, boxes_xyxy(80, 12)),
                                tensor(KILN_FLOAT32, {80}, uniform(80, 0, 1, 13))};
  expect_same(nms.run_cpu(nms_in, 1), nms.run_cuda(nms_in, 1), 0);
  Instance roi_align("TorchvisionRoiAlign",
                     {float_field("spatial_scale", 0.5f), int_field("pooled_height", 2),
                      int_field("pooled_width", 3), int_field("aligned", 1)});
  std::vector<float> rois = boxes_xyxy(4, 14), with_batch;
  for (int r = 0; r < 4; ++r) {
    with_batch.push_back(static_cast<float>(r % 2));
    with_batch.insert(with_batch.end(), rois.begin() + r * 4, rois.begin() + r * 4 + 4);
  }
  std::vector<Tensor> roi_in = {tensor(KILN_FLOAT32, {2, 2, 8, 9}, uniform(288, -1, 1, 15)),
                                tensor(KILN_FLOAT32, {4, 5}, with_batch)};
  expect_same(roi_align.run_cpu(roi_in, 1), roi_align.run_cuda(roi_in, 1), 1e-5f);
}

TEST(KilnPluginsCuda, RoiAlignRefusesABadBatchIndexAsTheCpuDoes) {
  SKIP_WITHOUT_GPU();
  Instance onnx("RoiAlign", {});
  for (int64_t bad : {2, -1}) {
    const std::string cpu = failure_of([&] { onnx.run_cpu(roi_align_inputs(bad), 1); });
    EXPECT_NE(cpu.find("outside [0, 2)"), std::string::npos) << cpu;
    EXPECT_EQ(failure_of([&] { onnx.run_cuda(roi_align_inputs(bad), 1); }), cpu);
  }
  Instance torchvision("TorchvisionRoiAlign", {});
  for (float bad : {2.0f, -0.5f}) {
    const std::string cpu =
        failure_of([&] { torchvision.run_cpu(torchvision_roi_align_inputs(bad), 1); });
    EXPECT_NE(cpu.find("is not a batch index in [0, 2)"), std::string::npos) << cpu;
    EXPECT_EQ(failure_of([&] { torchvision.run_cuda(torchvision_roi_align_inputs(bad), 1); }),
              cpu);
  }
  // A good index still runs after a refused one (the flag is reset per call).
  expect_same(onnx.run_cpu(roi_align_inputs(1), 1), onnx.run_cuda(roi_align_inputs(1), 1), 1e-5f);
}

#else

TEST(KilnPlugins, BuiltWithoutCudaDeclaresNoCudaPath) {
  // kiln then refuses these plugins in CUDA builds, naming plugin and backend, before any call.
  Instance op("RoiAlign", {});
  EXPECT_EQ(op.c().execute_cuda, nullptr);
}
#endif

}  // namespace
}  // namespace kiln
