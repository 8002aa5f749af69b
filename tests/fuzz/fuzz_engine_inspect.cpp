// Fuzz target: engine bytes -> `kiln inspect` (text, --json, --json --source, --kernels --source),
// which prints every field the verifier let through. The first byte picks the output form; the
// rest is the engine, with its checksum re-stamped (fuzz_engine_load.cpp says why). The command
// reads a path, so the bytes go through a memfd; its output is discarded.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <streambuf>
#include <string>
#include <vector>

#include "format/engine_container.hpp"
#include "format/engine_schema.hpp"
#include "fuzz_support.hpp"
#include "tools/commands.hpp"

namespace {

class DiscardBuffer : public std::streambuf {
 protected:
  int_type overflow(int_type ch) override { return traits_type::not_eof(ch); }
  std::streamsize xsputn(const char*, std::streamsize count) override { return count; }
};

struct EngineFile {
  int fd = -1;
  std::string path;
  EngineFile() {
    fd = memfd_create("kiln-fuzz-engine", 0);
    if (fd < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void assign(const std::vector<uint8_t>& bytes) const {
    if (ftruncate(fd, 0) != 0) std::abort();
    size_t written = 0;
    while (written < bytes.size()) {
      const ssize_t n = pwrite(fd, bytes.data() + written, bytes.size() - written,
                               static_cast<off_t>(written));
      if (n <= 0) std::abort();
      written += static_cast<size_t>(n);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const EngineFile file;
  static DiscardBuffer discard;
  static std::streambuf* const stdout_buffer = std::cout.rdbuf(&discard);
  (void)stdout_buffer;
  if (size == 0) return 0;
  std::vector<uint8_t> bytes(data + 1, data + size);
  if (bytes.size() >= kiln::format::schema::kHeaderSize) {
    const uint64_t checksum = kiln::format::engine_checksum(bytes);
    std::memcpy(bytes.data() + kiln::format::schema::kOffsetChecksum, &checksum, sizeof(checksum));
  }
  file.assign(bytes);
  std::vector<std::string> args{file.path};
  switch (data[0] % 4) {
    case 1:
      args.push_back("--json");
      break;
    case 2:
      args.insert(args.end(), {"--json", "--source"});
      break;
    case 3:
      args.insert(args.end(), {"--kernels", "--source"});
      break;
    default:
      break;
  }
  kiln::fuzz::expect_only_kiln_errors([&] { kiln::tools::inspect_command(args); });
  return 0;
}
