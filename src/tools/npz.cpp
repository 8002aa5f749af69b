#include "tools/npz.hpp"

#include <cstdint>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>

#include "base/error.hpp"
#include "tools/npy.hpp"

namespace kiln::tools {
namespace {

constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kDirectoryEntry = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr size_t kEndOfDirectorySize = 22;
constexpr size_t kDirectoryEntrySize = 46;
constexpr size_t kLocalHeaderSize = 30;

// Little-endian fields of the archive, bounds-checked.
class Reader {
 public:
  Reader(const std::vector<uint8_t>& bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  uint32_t u16(size_t at) const {
    check(at, 2);
    return static_cast<uint32_t>(bytes_[at]) | static_cast<uint32_t>(bytes_[at + 1]) << 8;
  }
  uint32_t u32(size_t at) const { return u16(at) | u16(at + 2) << 16; }
  void check(size_t at, size_t size) const {
    if (at > bytes_.size() || size > bytes_.size() - at) {
      fail(ErrorCode::kCorruptFile, path_, ": truncated .npz (zip) archive");
    }
  }

 private:
  const std::vector<uint8_t>& bytes_;
  const std::string& path_;
};

}  // namespace

std::map<std::string, Tensor> read_npz(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kNotFound, path, ": cannot open");
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(ErrorCode::kIoError, path, ": read failed");
  const Reader r(bytes, path);
  // The end-of-directory record is the last one, followed by a comment of up to 64 KiB.
  size_t end = bytes.size() + 1;
  for (size_t at = bytes.size() >= kEndOfDirectorySize ? bytes.size() - kEndOfDirectorySize + 1 : 0; at-- > 0;) {
    if (r.u32(at) == kEndOfDirectory) {
      end = at;
      break;
    }
    if (bytes.size() - at > kEndOfDirectorySize + 0xFFFF) break;
  }
  if (end > bytes.size()) fail(ErrorCode::kCorruptFile, path, ": not a .npz (zip) archive");
  const uint32_t entries = r.u16(end + 10);
  size_t at = r.u32(end + 16);
  std::map<std::string, Tensor> arrays;
  for (uint32_t e = 0; e < entries; ++e) {
    if (r.u32(at) != kDirectoryEntry) fail(ErrorCode::kCorruptFile, path, ": bad zip directory entry ", e);
    const uint32_t method = r.u16(at + 10);
    const uint32_t size = r.u32(at + 20);
    const uint32_t name_size = r.u16(at + 28);
    const uint32_t next = kDirectoryEntrySize + name_size + r.u16(at + 30) + r.u16(at + 32);
    const size_t local = r.u32(at + 42);
    r.check(at + kDirectoryEntrySize, name_size);
    std::string name(bytes.begin() + static_cast<std::ptrdiff_t>(at + kDirectoryEntrySize),
                     bytes.begin() + static_cast<std::ptrdiff_t>(at + kDirectoryEntrySize + name_size));
    if (method != 0) {
      fail(ErrorCode::kUnsupported, path, ": member '", name,
           "' is compressed (np.savez_compressed); save with np.savez or as .npy files");
    }
    if (size == 0xFFFFFFFFu) fail(ErrorCode::kUnsupported, path, ": member '", name, "' is over 4 GiB");
    if (r.u32(local) != kLocalHeader) fail(ErrorCode::kCorruptFile, path, ": bad zip header of '", name, "'");
    const size_t data = local + kLocalHeaderSize + r.u16(local + 26) + r.u16(local + 28);
    r.check(data, size);
    if (name.size() > 4 && name.ends_with(".npy")) name.resize(name.size() - 4);
    arrays[name] = parse_npy(std::span<const uint8_t>(bytes.data() + data, size), path + ":" + name);
    at += next;
  }
  return arrays;
}

}  // namespace kiln::tools
