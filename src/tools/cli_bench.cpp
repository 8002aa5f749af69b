// kiln bench: latency percentiles and throughput of an engine.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <string_view>
#include <utility>

#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "kiln/runtime.hpp"
#include "tools/cli_args.hpp"
#include "tools/cli_tensors.hpp"
#include "tools/commands.hpp"
#include "tools/json_writer.hpp"

namespace kiln::tools {
namespace {

constexpr std::string_view kBenchHelp = R"(usage: kiln bench ENGINE.kiln [options]

Run an engine repeatedly on one execution context and report the latency of each execute call
(min, mean, p50, p90, p99, max) and the throughput in calls/s and samples/s (a call's samples are
its first input's first dimension, the batch). By default inputs and outputs stay in the engine's
memory (GPU memory for CUDA engines) and a call is timed until its work has finished.

options:
  --iterations N          timed runs (default 100, at least 1)
  --duration SECONDS      keep running until this much time has passed too (e.g. 10 or 0.5;
                          default 0: --iterations alone)
  --warmup N              untimed runs first (default 10)
  --input NAME=FILE.npy   the value of input NAME; inputs without one are random
                          (dynamic dims take their opt value)
  --shapes NAME:DIMS[,NAME:DIMS...]
                          the shape of a random input, e.g. x:8x3x224x224 (dynamic engines: any
                          shape in the engine's range); repeat or separate with ','
  --seed N                seed of the random inputs (default 0)
  --threads N             CPU engines: threads one call's kernels split their work over
                          (default: the CPUs this process may use; 0 means the default)
  --host-io               time host-to-host calls instead (input and output copies included)
  --no-cuda-graph         CUDA engines: launch every kernel on each call instead of replaying a
                          captured CUDA graph
  --profile [N]           also time every layer (median of the runs, no CUDA graph) and print
                          the N slowest (default 10), with the bytes of each layer's inputs,
                          weights and outputs, the bandwidth that implies and (CUDA) its share
                          of the GPU's peak DRAM bandwidth; with --json, the "profile" member
                          lists every layer in launch order as well
  --export-times FILE     write every timed call's latency (ms, in run order) to FILE as JSON
  --json                  print the results as one JSON object
  --plugins PATH          load the plugin library PATH (docs/plugins.md) before loading the
                          engine; repeat per library
  -h, --help              show this help
)";

// Nearest-rank percentile of sorted samples.
double percentile(const std::vector<double>& sorted, double p) {
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = rank < 1.0 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

// Achieved bandwidth of a layer (or op) that moved `bytes` in `milliseconds`; 0 for no time.
double gb_per_s(uint64_t bytes, double milliseconds) {
  return milliseconds > 0.0 ? static_cast<double>(bytes) / (milliseconds * 1e6) : 0.0;
}

struct OpTotal {
  std::string op;
  double milliseconds = 0.0;
  uint64_t bytes = 0;
  int layers = 0;
};

// Per op type, the slowest first.
std::vector<OpTotal> totals_by_op(const std::vector<LayerTiming>& timings) {
  std::map<std::string, OpTotal> by_op;
  for (const LayerTiming& t : timings) {
    OpTotal& total = by_op[t.op];
    total.op = t.op;
    total.milliseconds += t.milliseconds;
    total.bytes += t.bytes;
    ++total.layers;
  }
  std::vector<OpTotal> ops;
  for (auto& [op, total] : by_op) ops.push_back(total);
  std::sort(ops.begin(), ops.end(),
            [](const OpTotal& a, const OpTotal& b) { return a.milliseconds > b.milliseconds; });
  return ops;
}

// The layers' summed milliseconds and bytes.
std::pair<double, uint64_t> summed(const std::vector<LayerTiming>& timings) {
  double milliseconds = 0.0;
  uint64_t bytes = 0;
  for (const LayerTiming& t : timings) {
    milliseconds += t.milliseconds;
    bytes += t.bytes;
  }
  return {milliseconds, bytes};
}

void sort_slowest_first(std::vector<LayerTiming>& timings) {
  std::stable_sort(timings.begin(), timings.end(), [](const LayerTiming& a, const LayerTiming& b) {
    return a.milliseconds > b.milliseconds;
  });
}

// "  12.345 MB   1234.5 GB/s  37%": bytes moved, achieved bandwidth and, when the peak is known,
// its share.
void print_traffic(uint64_t bytes, double milliseconds, double peak_gb_per_s) {
  const double achieved = gb_per_s(bytes, milliseconds);
  std::cout << std::setprecision(3) << std::setw(11) << static_cast<double>(bytes) / 1e6 << " MB "
            << std::setprecision(1) << std::setw(9) << achieved << " GB/s";
  if (peak_gb_per_s > 0.0)
    std::cout << std::setprecision(0) << std::setw(5) << 100.0 * achieved / peak_gb_per_s << '%';
}

// The `top` slowest layers, with the totals per op type; each with the bytes its tensors occupy
// and the bandwidth that implies.
void print_profile(std::vector<LayerTiming> timings, uint64_t top, double peak_gb_per_s) {
  const auto [total_ms, total_bytes] = summed(timings);
  sort_slowest_first(timings);
  std::cout << std::fixed << std::setprecision(4)
            << "layer profile (no CUDA graph): " << timings.size() << " layers, " << total_ms
            << " ms summed, " << std::setprecision(3) << static_cast<double>(total_bytes) / 1e6
            << " MB moved (each layer's inputs, weights and outputs once)\n";
  if (peak_gb_per_s > 0.0) {
    std::cout << std::setprecision(1) << "peak DRAM bandwidth: " << peak_gb_per_s
              << " GB/s (memory clock x bus width); % columns are shares of it\n";
  }
  for (const OpTotal& op : totals_by_op(timings)) {
    std::cout << "  op " << std::left << std::setw(20) << op.op << std::right
              << std::setprecision(4) << std::setw(10) << op.milliseconds << " ms  " << std::setw(5)
              << op.layers << " layers";
    print_traffic(op.bytes, op.milliseconds, peak_gb_per_s);
    std::cout << '\n';
  }
  for (size_t i = 0; i < timings.size() && i < top; ++i) {
    std::cout << "  " << std::setprecision(4) << std::setw(10) << timings[i].milliseconds << " ms";
    print_traffic(timings[i].bytes, timings[i].milliseconds, peak_gb_per_s);
    std::cout << "  " << timings[i].op << " '" << timings[i].name << "'\n";
  }
}

// The profile as the "profile" member of bench --json: the totals per op and the `top` slowest
// layers.
void write_profile_json(JsonWriter& out, std::vector<LayerTiming> timings, uint64_t top,
                        double peak_gb_per_s) {
  const auto [total_ms, total_bytes] = summed(timings);
  const std::vector<LayerTiming> in_launch_order = timings;
  sort_slowest_first(timings);
  out.key("profile").begin_object();
  out.key("layers").value(static_cast<uint64_t>(timings.size()));
  out.key("summed_ms").value(total_ms);
  out.key("bytes").value(total_bytes);
  if (peak_gb_per_s > 0.0) out.key("peak_dram_gb_per_s").value(peak_gb_per_s);
  out.key("ops").begin_array();
  for (const OpTotal& op : totals_by_op(timings)) {
    out.begin_object();
    out.key("op").value(op.op);
    out.key("ms").value(op.milliseconds);
    out.key("layers").value(op.layers);
    out.key("bytes").value(op.bytes);
    out.key("gb_per_s").value(gb_per_s(op.bytes, op.milliseconds));
    out.end_object();
  }
  out.end_array();
  // One layer's timing; the slowest-layers list adds its bandwidth.
  const auto write_timing = [&out](const LayerTiming& t, bool with_bandwidth) {
    out.begin_object();
    out.key("name").value(t.name);
    out.key("op").value(t.op);
    out.key("ms").value(t.milliseconds);
    out.key("bytes").value(t.bytes);
    if (with_bandwidth) out.key("gb_per_s").value(gb_per_s(t.bytes, t.milliseconds));
    out.end_object();
  };
  out.key("all_layers").begin_array();
  for (const LayerTiming& t : in_launch_order) write_timing(t, false);
  out.end_array();
  out.key("slowest_layers").begin_array();
  for (size_t i = 0; i < timings.size() && i < top; ++i) write_timing(timings[i], true);
  out.end_array();
  out.end_object();
}

// The calls' latencies, for --export-times.
void export_times(const std::string& path, const std::string& engine_path,
                  const std::vector<double>& latencies_ms) {
  JsonWriter out;
  out.begin_object();
  out.key("engine").value(engine_path);
  out.key("latency_ms").begin_array();
  for (double ms : latencies_ms) out.value(ms);
  out.end_array();
  out.end_object();
  std::ofstream file(path, std::ios::trunc);
  if (!file) fail(ErrorCode::kIoError, path, ": cannot open for writing (--export-times)");
  file << out.str() << '\n';
  file.close();
  if (!file) fail(ErrorCode::kIoError, path, ": write failed (--export-times)");
}

constexpr uint64_t kDefaultProfileTop = 10;

}  // namespace

int bench_command(std::span<const std::string> args) {
  std::optional<std::string> engine_path;
  std::vector<InputFile> input_files;
  uint64_t iterations = 100;
  uint64_t warmup = 10;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false;
  bool host_io = false;
  bool cuda_graphs = true;
  uint64_t profile_top = 0;
  double duration_s = 0.0;
  std::vector<InputShape> shapes;
  std::optional<std::string> times_path;

  ArgCursor cursor(args);
  while (cursor.next()) {
    const std::string& flag = cursor.flag();
    if (cursor.is_positional()) {
      if (engine_path) cursor.reject();
      engine_path = flag;
    } else if (flag == "-h" || flag == "--help") {
      std::cout << kBenchHelp;
      return 0;
    } else if (flag == "--iterations") {
      iterations = parse_unsigned(cursor.value(), "--iterations");
      if (iterations == 0) throw UsageError("--iterations must be at least 1");
    } else if (flag == "--warmup") {
      warmup = parse_unsigned(cursor.value(), "--warmup");
    } else if (flag == "--input") {
      input_files.push_back(parse_input_option(cursor.value()));
    } else if (flag == "--seed") {
      seed = parse_unsigned(cursor.value(), "--seed");
    } else if (flag == "--host-io") {
      cursor.expect_no_value();
      host_io = true;
    } else if (flag == "--profile") {
      const std::optional<std::string> top = cursor.count_value_if_given();
      profile_top = top ? parse_unsigned(*top, "--profile") : kDefaultProfileTop;
      if (profile_top == 0) throw UsageError("--profile: N must be at least 1");
    } else if (flag == "--duration") {
      duration_s = parse_seconds(cursor.value(), "--duration");
    } else if (flag == "--shapes") {
      parse_shapes_option(cursor.value(), shapes);
    } else if (flag == "--export-times") {
      times_path = cursor.value();
    } else if (flag == "--threads") {
      threads = parse_threads(cursor.value());
    } else if (flag == "--no-cuda-graph") {
      cursor.expect_no_value();
      cuda_graphs = false;
    } else if (flag == "--plugins") {
      load_plugin_library(cursor.value());
    } else if (flag == "--json") {
      cursor.expect_no_value();
      json = true;
    } else {
      cursor.reject();
    }
  }
  if (!engine_path) throw UsageError("missing the engine file to benchmark");
  if (profile_top && host_io) throw UsageError("--profile times bound calls; it cannot be used with --host-io");

  LoadedEngine loaded = load_engine(*engine_path);
  std::vector<OwnedInput> inputs = prepare_inputs(loaded, input_files, true, seed, shapes);
  std::vector<NamedTensor> named = as_named_tensors(inputs);
  ExecutionContext context = loaded.engine.create_context();
  context.set_cuda_graphs(cuda_graphs);
  context.set_threads(threads);

  // Bound mode: inputs copied into the engine's memory once; outputs sized by one host run.
  std::vector<EngineBuffer> buffers;
  std::vector<NamedTensor> bound_inputs, bound_outputs;
  if (!host_io) {
    const std::vector<Tensor> shaped = context.execute(named);
    for (const NamedTensor& in : named) {
      const auto bytes = static_cast<size_t>(checked_byte_size(in.tensor.shape, in.tensor.dtype, in.name));
      EngineBuffer& buffer = buffers.emplace_back(loaded.engine, bytes);
      buffer.copy_from_host(in.tensor.data, bytes);
      bound_inputs.push_back({in.name, {in.tensor.dtype, in.tensor.shape, buffer.data()}});
    }
    // A data-dependent output's buffer must hold its upper bound where one is known (the run
    // writes its result from the buffer's start), else the size this run produced.
    const std::vector<Shape> planned = context.output_shapes(named);
    for (size_t o = 0; o < shaped.size(); ++o) {
      const BindingInfo& binding = loaded.engine.outputs()[o];
      Shape shape = shaped[o].shape;
      if (binding.data_dependent_shape &&
          std::all_of(planned[o].begin(), planned[o].end(), [](int64_t dim) { return dim >= 0; })) {
        shape = planned[o];
      }
      const auto bytes = static_cast<size_t>(checked_byte_size(shape, shaped[o].dtype, binding.name));
      EngineBuffer& buffer = buffers.emplace_back(loaded.engine, bytes);
      bound_outputs.push_back({binding.name, {shaped[o].dtype, shape, buffer.data()}});
    }
  }
  auto call = [&] {
    if (host_io) {
      context.execute(named);
    } else {
      context.execute(bound_inputs, bound_outputs, nullptr);
      synchronize(loaded.engine, nullptr);
    }
  };

  for (uint64_t i = 0; i < warmup; ++i) call();
  std::vector<double> latencies_ms;
  latencies_ms.reserve(iterations);
  const auto total_start = std::chrono::steady_clock::now();
  double total_s = 0.0;
  while (latencies_ms.size() < iterations || total_s < duration_s) {
    const auto start = std::chrono::steady_clock::now();
    call();
    const auto end = std::chrono::steady_clock::now();
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    total_s = std::chrono::duration<double>(end - total_start).count();
  }
  iterations = latencies_ms.size();
  if (times_path) export_times(*times_path, *engine_path, latencies_ms);
  // Samples per call: the first input's leading dimension (its batch), 1 for scalars.
  const int64_t batch =
      !inputs.empty() && !inputs[0].tensor.shape.empty() ? inputs[0].tensor.shape[0] : 1;

  std::vector<double> sorted = latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / sorted.size();
  const double throughput = total_s > 0 ? static_cast<double>(iterations) / total_s : 0.0;
  const double samples_per_s = throughput * static_cast<double>(batch);
  std::vector<LayerTiming> timings;
  if (profile_top) timings = context.profile(bound_inputs, bound_outputs);
  const double peak_gb_per_s = profile_top ? peak_memory_bandwidth_gb_per_s(loaded.engine) : 0.0;

  if (json) {
    JsonWriter out;
    out.begin_object();
    out.key("engine").value(*engine_path);
    out.key("backend").value(loaded.engine.backend());
    out.key("iterations").value(iterations);
    out.key("warmup").value(warmup);
    out.key("duration_s").value(total_s);
    out.key("threads").value(context.threads());
    out.key("batch").value(batch);
    out.key("latency_ms").begin_object();
    out.key("min").value(sorted.front());
    out.key("mean").value(mean);
    out.key("p50").value(percentile(sorted, 50));
    out.key("p90").value(percentile(sorted, 90));
    out.key("p99").value(percentile(sorted, 99));
    out.key("max").value(sorted.back());
    out.end_object();
    out.key("throughput_per_s").value(throughput);
    out.key("samples_per_s").value(samples_per_s);
    if (profile_top) write_profile_json(out, std::move(timings), profile_top, peak_gb_per_s);
    out.end_object();
    std::cout << out.str() << '\n';
    return 0;
  }
  std::cout << "engine: " << *engine_path << " (" << loaded.engine.backend() << ")\n";
  for (const OwnedInput& input : inputs) {
    std::cout << "input  " << input.name << ": " << dtype_name(input.tensor.dtype) << ' '
              << shape_to_string(input.tensor.shape) << '\n';
  }
  std::cout << iterations << " iterations after " << warmup << " warm-up, " << std::fixed
            << std::setprecision(2) << total_s << " s";
  if (loaded.engine.backend() == "cpu") std::cout << ", " << context.threads() << " thread(s)";
  std::cout << '\n';
  std::cout << std::fixed << std::setprecision(4);
  std::cout << "latency (ms): min " << sorted.front() << "  mean " << mean << "  p50 "
            << percentile(sorted, 50) << "  p90 " << percentile(sorted, 90) << "  p99 "
            << percentile(sorted, 99) << "  max " << sorted.back() << '\n';
  std::cout << std::setprecision(1) << "throughput: " << throughput << " calls/s, "
            << samples_per_s << " samples/s (batch " << batch << ")\n";
  if (profile_top) print_profile(std::move(timings), profile_top, peak_gb_per_s);
  return 0;
}

}  // namespace kiln::tools
