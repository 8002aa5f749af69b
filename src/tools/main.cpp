// The kiln command-line tool: build, run, inspect and benchmark engines.
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/runtime.hpp"
#include "tools/cli_args.hpp"
#include "tools/commands.hpp"

namespace {

constexpr int kExitRuntimeError = 1;
constexpr int kExitUsageError = 2;

constexpr std::string_view kTopLevelHelp = R"(usage: kiln <command> [options]

Compile ONNX models into kiln engines and run them.

commands:
  build     compile an ONNX model into an engine file
  run       run an engine on .npy inputs (or random ones) and save the outputs
  inspect   describe an engine file: bindings, layers, memory plan, metadata
  bench     measure an engine's latency and throughput
  compare   run an engine and compare its outputs with saved ones (.npy files or .npz)

options:
  -h, --help     show this help (or "kiln <command> --help" for a command's options)
  --version      print the runtime version and the newest engine format it reads

Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
)";

struct Command {
  std::string_view name;
  int (*fn)(std::span<const std::string>);
};

constexpr Command kCommands[] = {
    {"build", kiln::tools::build_command},
    {"run", kiln::tools::run_command},
    {"inspect", kiln::tools::inspect_command},
    {"bench", kiln::tools::bench_command},
    {"compare", kiln::tools::compare_command},
};

int report(std::string_view command, std::string_view message, int status) {
  std::cerr << "kiln";
  if (!command.empty()) std::cerr << ' ' << command;
  std::cerr << ": error: " << message << '\n';
  if (status == kExitUsageError) {
    std::cerr << "(see 'kiln" << (command.empty() ? "" : " ") << command << " --help')\n";
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kTopLevelHelp;
    return kExitUsageError;
  }
  const std::string& first = args[0];
  if (first == "-h" || first == "--help" || first == "help") {
    std::cout << kTopLevelHelp;
    return 0;
  }
  if (first == "--version") {
    std::cout << "kiln " << kiln::runtime_version() << " (engine format "
              << kiln::engine_format_version() << ")\n";
    return 0;
  }
  for (const Command& command : kCommands) {
    if (command.name != first) continue;
    try {
      return command.fn(std::span<const std::string>(args).subspan(1));
    } catch (const kiln::tools::UsageError& e) {
      return report(command.name, e.what(), kExitUsageError);
    } catch (const kiln::Error& e) {
      return report(command.name, e.what(), kExitRuntimeError);
    } catch (const std::bad_alloc&) {
      return report(command.name, "out of memory", kExitRuntimeError);
    } catch (const std::exception& e) {
      return report(command.name, e.what(), kExitRuntimeError);
    }
  }
  return report("", "unknown command '" + first + "' (commands: build, run, inspect, bench, compare)",
                kExitUsageError);
}
