#include "base/memory_limit.hpp"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "base/error.hpp"

namespace kiln {

uint64_t parse_byte_size(std::string_view text, std::string_view what) {
  auto invalid = [&](std::string_view why) -> uint64_t {
    fail(ErrorCode::kInvalidArgument, what, ": '", text, "' ", why,
         " (expected a byte count such as 1073741824, 512M or 8G)");
  };
  size_t i = 0;
  uint64_t value = 0;
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const auto digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (kMax - digit) / 10) return invalid("is too large");
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) return invalid("is not a number");
  std::string suffix;
  for (; i < text.size(); ++i) {
    suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  }
  int shift = 0;
  if (!suffix.empty() && suffix != "B") {
    const char unit = suffix[0];
    const std::string rest = suffix.substr(1);
    if (rest != "" && rest != "B" && rest != "IB") return invalid("has an unknown unit");
    switch (unit) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: return invalid("has an unknown unit");
    }
  }
  if (value > (kMax >> shift)) return invalid("is too large");
  value <<= shift;
  if (value == 0) return invalid("is zero");
  return value;
}

std::optional<uint64_t> memory_limit_from_env() {
  const char* text = std::getenv(kMemoryLimitEnv);
  if (text == nullptr || *text == '\0') return std::nullopt;
  return parse_byte_size(text, kMemoryLimitEnv);
}

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

MemoryLimit resolve_memory_limit(uint64_t machine_bytes, std::string_view machine_source) {
  if (const auto from_env = memory_limit_from_env()) return MemoryLimit{*from_env, kMemoryLimitEnv};
  if (machine_bytes == 0) {
    return MemoryLimit{static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "64-bit sizes"};
  }
  return MemoryLimit{machine_bytes, std::string(machine_source)};
}

MemoryLimit host_memory_limit() {
  return resolve_memory_limit(physical_memory_bytes(), "physical memory");
}

std::string describe_memory_limit(const MemoryLimit& limit) {
  std::string text = "the memory limit of " + format_bytes(limit.bytes) + " (" + limit.source;
  if (limit.source != kMemoryLimitEnv) {
    text += std::string("; set ") + kMemoryLimitEnv + " to change it";
  }
  return text + ")";
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024.0 && unit < 5) {
    value /= 1024.0;
    ++unit;
  }
  std::ostringstream out;
  out.precision(value < 10.0 ? 2 : 3);
  out << value << ' ' << kUnits[unit] << " (" << bytes << " bytes)";
  return out.str();
}

}  // namespace kiln
