// kiln bench: latency percentiles and throughput of an engine.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <string_view>

#include "tools/cli_args.hpp"
#include "tools/cli_tensors.hpp"
#include "tools/commands.hpp"
#include "tools/json_writer.hpp"

namespace kiln::tools {
namespace {

constexpr std::string_view kBenchHelp = R"(usage: kiln bench ENGINE.kiln [options]

Run an engine repeatedly on one execution context and report the latency of each execute call
(min, mean, p50, p90, p99, max) and the throughput. By default inputs and outputs stay in the
engine's memory (GPU memory for CUDA engines) and a call is timed until its work has finished.

options:
  --iterations N          timed runs (default 100, at least 1)
  --warmup N              untimed runs first (default 10)
  --input NAME=FILE.npy   the value of input NAME; inputs without one are random
                          (dynamic dims take their opt value)
  --seed N                seed of the random inputs (default 0)
  --host-io               time host-to-host calls instead (input and output copies included)
  --no-cuda-graph         CUDA engines: launch every kernel on each call instead of replaying a
                          captured CUDA graph
  --profile N             also time every layer (median of the runs, no CUDA graph) and print
                          the N slowest
  --json                  print the results as one JSON object
  -h, --help              show this help
)";

// Nearest-rank percentile of sorted samples.
double percentile(const std::vector<double>& sorted, double p) {
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = rank < 1.0 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

// The `top` slowest layers, with their share of the summed layer time and the total per op type.
void print_profile(std::vector<LayerTiming> timings, uint64_t top) {
  double total = 0.0;
  std::map<std::string, std::pair<double, int>> by_op;
  for (const LayerTiming& t : timings) {
    total += t.milliseconds;
    by_op[t.op].first += t.milliseconds;
    ++by_op[t.op].second;
  }
  std::sort(timings.begin(), timings.end(),
            [](const LayerTiming& a, const LayerTiming& b) { return a.milliseconds > b.milliseconds; });
  std::cout << std::setprecision(4) << "layer profile (no CUDA graph): " << timings.size() << " layers, " << total
            << " ms summed\n";
  std::vector<std::pair<std::string, std::pair<double, int>>> ops(by_op.begin(), by_op.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  for (const auto& [op, stat] : ops) {
    std::cout << "  op " << std::left << std::setw(20) << op << std::right << std::setw(10) << stat.first << " ms  "
              << std::setw(5) << stat.second << " layers\n";
  }
  for (size_t i = 0; i < timings.size() && i < top; ++i) {
    std::cout << "  " << std::setw(10) << timings[i].milliseconds << " ms  " << timings[i].op << " '"
              << timings[i].name << "'\n";
  }
}

}  // namespace

int bench_command(std::span<const std::string> args) {
  std::optional<std::string> engine_path;
  std::vector<InputFile> input_files;
  uint64_t iterations = 100;
  uint64_t warmup = 10;
  uint64_t seed = 0;
  bool json = false;
  bool host_io = false;
  bool cuda_graphs = true;
  uint64_t profile_top = 0;

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
      profile_top = parse_unsigned(cursor.value(), "--profile");
    } else if (flag == "--no-cuda-graph") {
      cursor.expect_no_value();
      cuda_graphs = false;
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
  std::vector<OwnedInput> inputs = prepare_inputs(loaded, input_files, true, seed);
  std::vector<NamedTensor> named = as_named_tensors(inputs);
  ExecutionContext context = loaded.engine.create_context();
  context.set_cuda_graphs(cuda_graphs);

  // Bound mode: inputs copied into the engine's memory once; outputs sized by one host run.
  std::vector<EngineBuffer> buffers;
  std::vector<NamedTensor> bound_inputs, bound_outputs;
  if (!host_io) {
    const std::vector<Tensor> shaped = context.execute(named);
    for (const NamedTensor& in : named) {
      const size_t bytes = static_cast<size_t>(shape_numel(in.tensor.shape)) * dtype_size(in.tensor.dtype);
      EngineBuffer& buffer = buffers.emplace_back(loaded.engine, bytes);
      buffer.copy_from_host(in.tensor.data, bytes);
      bound_inputs.push_back({in.name, {in.tensor.dtype, in.tensor.shape, buffer.data()}});
    }
    for (size_t o = 0; o < shaped.size(); ++o) {
      EngineBuffer& buffer = buffers.emplace_back(loaded.engine, shaped[o].bytes.size());
      bound_outputs.push_back({loaded.engine.outputs()[o].name, {shaped[o].dtype, shaped[o].shape, buffer.data()}});
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
  for (uint64_t i = 0; i < iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    call();
    latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - total_start).count();

  std::vector<double> sorted = latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / sorted.size();
  const double throughput = total_s > 0 ? static_cast<double>(iterations) / total_s : 0.0;

  if (json) {
    JsonWriter out;
    out.begin_object();
    out.key("engine").value(*engine_path);
    out.key("backend").value(loaded.engine.backend());
    out.key("iterations").value(iterations);
    out.key("warmup").value(warmup);
    out.key("latency_ms").begin_object();
    out.key("min").value(sorted.front());
    out.key("mean").value(mean);
    out.key("p50").value(percentile(sorted, 50));
    out.key("p90").value(percentile(sorted, 90));
    out.key("p99").value(percentile(sorted, 99));
    out.key("max").value(sorted.back());
    out.end_object();
    out.key("throughput_per_s").value(throughput);
    out.end_object();
    std::cout << out.str() << '\n';
    return 0;
  }
  std::cout << "engine: " << *engine_path << " (" << loaded.engine.backend() << ")\n";
  for (const OwnedInput& input : inputs) {
    std::cout << "input  " << input.name << ": " << dtype_name(input.tensor.dtype) << ' '
              << shape_to_string(input.tensor.shape) << '\n';
  }
  std::cout << iterations << " iterations after " << warmup << " warm-up\n";
  std::cout << std::fixed << std::setprecision(4);
  std::cout << "latency (ms): min " << sorted.front() << "  mean " << mean << "  p50 "
            << percentile(sorted, 50) << "  p90 " << percentile(sorted, 90) << "  p99 "
            << percentile(sorted, 99) << "  max " << sorted.back() << '\n';
  std::cout << std::setprecision(1) << "throughput: " << throughput << " inferences/s\n";
  if (profile_top) print_profile(context.profile(bound_inputs, bound_outputs), profile_top);
  return 0;
}

}  // namespace kiln::tools
