#include "codegen/nvrtc_compiler.hpp"

#include <algorithm>
#include <charconv>
#include <sstream>

#include "base/error.hpp"
#include "codegen/nvrtc_library.hpp"

namespace kiln::codegen {
namespace {

// Destroys an NVRTC program when the compile call ends, however it ends.
class ProgramGuard {
 public:
  ProgramGuard(const NvrtcLibrary& lib, NvrtcLibrary::Program program)
      : lib_(lib), program_(program) {}
  ~ProgramGuard() { lib_.destroy_program(&program_); }
  ProgramGuard(const ProgramGuard&) = delete;
  ProgramGuard& operator=(const ProgramGuard&) = delete;

 private:
  const NvrtcLibrary& lib_;
  NvrtcLibrary::Program program_;
};

std::string error_text(const NvrtcLibrary& lib, NvrtcLibrary::Result result) {
  const char* text = lib.get_error_string(result);
  return detail::concat(text != nullptr ? text : "unknown NVRTC error", " (", result, ")");
}

std::string program_log(const NvrtcLibrary& lib, NvrtcLibrary::Program program) {
  size_t size = 0;
  if (lib.get_program_log_size(program, &size) != NvrtcLibrary::kSuccess || size <= 1) return {};
  std::string log(size, '\0');
  if (lib.get_program_log(program, log.data()) != NvrtcLibrary::kSuccess) return {};
  log.resize(log.find('\0') == std::string::npos ? log.size() : log.find('\0'));
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  return log;
}

// The line of the first error in an NVRTC log ("name(12): error: ..."), or 0 when there is none.
int first_error_line(const std::string& log) {
  for (const std::string_view marker : {"): error", "): catastrophic error"}) {
    size_t at = 0;
    while ((at = log.find(marker, at)) != std::string::npos) {
      const size_t open = log.rfind('(', at);
      int line = 0;
      if (open != std::string::npos && open + 1 < at) {
        const auto [end, ec] = std::from_chars(log.data() + open + 1, log.data() + at, line);
        if (ec == std::errc() && end == log.data() + at && line > 0) return line;
      }
      at += marker.size();
    }
  }
  return 0;
}

// Lines [line - 3, line + 3] of `source`, numbered, the error line marked with '>'.
std::string source_excerpt(const std::string& source, int line) {
  std::istringstream in(source);
  std::ostringstream out;
  std::string text;
  for (int number = 1; std::getline(in, text) && number <= line + 3; ++number) {
    if (number < line - 3) continue;
    out << "\n" << (number == line ? "> " : "  ") << number << " | " << text;
  }
  return out.str();
}

}  // namespace

std::vector<std::string> nvrtc_options(int sm_arch, const std::vector<std::string>& extra_options) {
  std::vector<std::string> options = {
      "--gpu-architecture=sm_" + std::to_string(sm_arch),
      "-std=c++17",
      "--ftz=false",
      "--prec-div=true",
      "--prec-sqrt=true",
  };
  // An extra "--name=value" replaces the default of the same name (NVRTC refuses conflicting repeats).
  for (const std::string& extra : extra_options) {
    const size_t equals = extra.find('=');
    if (equals != std::string::npos) {
      const std::string_view name(extra.data(), equals + 1);
      std::erase_if(options, [&](const std::string& o) { return o.starts_with(name); });
    }
    options.push_back(extra);
  }
  return options;
}

CompiledModule compile_cuda(std::string_view name, const std::string& source, int sm_arch,
                            const std::vector<std::string>& extra_options) {
  const std::string program_name = name.empty() ? std::string("kernel") : std::string(name);
  if (sm_arch < 10 || sm_arch > 9999) {
    fail(ErrorCode::kInvalidArgument, "compile_cuda '", program_name, "': sm_arch ", sm_arch,
         " is not a compute capability x 10 (e.g. 90 for sm_90)");
  }
  const NvrtcLibrary& lib = nvrtc_library();
  NvrtcLibrary::Program program = nullptr;
  NvrtcLibrary::Result result =
      lib.create_program(&program, source.c_str(), program_name.c_str(), 0, nullptr, nullptr);
  if (result != NvrtcLibrary::kSuccess) {
    fail(ErrorCode::kInternal, "compile_cuda '", program_name, "': nvrtcCreateProgram failed: ",
         error_text(lib, result));
  }
  const ProgramGuard guard(lib, program);

  const std::vector<std::string> options = nvrtc_options(sm_arch, extra_options);
  std::vector<const char*> option_pointers;
  option_pointers.reserve(options.size());
  for (const std::string& option : options) option_pointers.push_back(option.c_str());
  result = lib.compile_program(program, static_cast<int>(option_pointers.size()),
                               option_pointers.data());
  const std::string log = program_log(lib, program);
  const std::string compiler = detail::concat("nvrtc ", lib.major, ".", lib.minor);
  if (result == NvrtcLibrary::kErrorCompilation) {
    const int line = first_error_line(log);
    fail(ErrorCode::kInternal, "compile_cuda '", program_name, "' for sm_", sm_arch, " with ",
         compiler, " failed:\n", log,
         line > 0 ? detail::concat("\nsource around line ", line, ":",
                                   source_excerpt(source, line))
                  : std::string());
  }
  if (result != NvrtcLibrary::kSuccess) {
    std::string joined;
    for (const std::string& option : options) joined += " " + option;
    fail(result == NvrtcLibrary::kErrorInvalidOption ? ErrorCode::kInvalidArgument
                                                     : ErrorCode::kInternal,
         "compile_cuda '", program_name, "' for sm_", sm_arch, ": ", compiler, " refused it: ",
         error_text(lib, result), "; options:", joined, log.empty() ? "" : "\n", log);
  }

  CompiledModule module;
  module.compiler = compiler;
  module.log = log;
  size_t size = 0;
  result = lib.get_cubin_size(program, &size);
  if (result != NvrtcLibrary::kSuccess || size == 0) {
    fail(ErrorCode::kInternal, "compile_cuda '", program_name, "': no cubin from ", compiler, " (",
         result != NvrtcLibrary::kSuccess ? error_text(lib, result) : "empty", ")");
  }
  module.cubin.resize(size);
  result = lib.get_cubin(program, reinterpret_cast<char*>(module.cubin.data()));
  if (result != NvrtcLibrary::kSuccess) {
    fail(ErrorCode::kInternal, "compile_cuda '", program_name, "': nvrtcGetCUBIN failed: ",
         error_text(lib, result));
  }
  return module;
}

std::string nvrtc_version() {
  const NvrtcLibrary& lib = nvrtc_library();
  return detail::concat("nvrtc ", lib.major, ".", lib.minor);
}

}  // namespace kiln::codegen
