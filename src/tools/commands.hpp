// The kiln subcommands. Each takes the arguments after its name, writes its results to stdout
// and returns the process exit status; it throws UsageError or kiln::Error on failure, which
// main() reports as "kiln <cmd>: error: <message>".
#pragma once

#include <span>
#include <string>

namespace kiln::tools {

int build_command(std::span<const std::string> args);
int run_command(std::span<const std::string> args);
int inspect_command(std::span<const std::string> args);
int bench_command(std::span<const std::string> args);
int compare_command(std::span<const std::string> args);

}  // namespace kiln::tools
