#include "frontend/onnx/external_data.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "base/error.hpp"

namespace kiln::onnx {
namespace {

namespace fs = std::filesystem;

// Linux's own limit on the links one lookup follows (MAXSYMLINKS).
constexpr int kMaxSymlinks = 40;

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

// Rejects location texts that name a file outside the model's folder by themselves.
void check_location_text(const std::string& location, const std::string& context) {
  if (location.empty()) fail(ErrorCode::kCorruptFile, context, ": external data has no 'location'");
  if (location.find('\0') != std::string::npos) {
    // The C library would cut the path at the NUL, so the text checked would not be the one used.
    fail(ErrorCode::kCorruptFile, context, ": external data location '",
         location.substr(0, location.find('\0')), "...' contains a NUL byte");
  }
  if (location.front() == '/' || location.front() == '\\' || fs::path(location).is_absolute() ||
      (location.size() >= 2 && location[1] == ':')) {
    fail(ErrorCode::kCorruptFile, context, ": external data location '", location,
         "' is an absolute path; it must be relative to the model's directory");
  }
  size_t start = 0;
  while (start <= location.size()) {
    size_t end = location.find_first_of("/\\", start);
    if (end == std::string::npos) end = location.size();
    if (location.compare(start, end - start, "..") == 0) {
      fail(ErrorCode::kCorruptFile, context, ": external data location '", location,
           "' escapes the model's directory ('..' is not allowed)");
    }
    start = end + 1;
  }
}

// The components of a path text in order, "/" first for an absolute one; "" and "." dropped.
std::vector<std::string> split_path(const std::string& text) {
  std::vector<std::string> parts;
  if (!text.empty() && text.front() == '/') parts.emplace_back("/");
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('/', start);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(start, end - start);
    if (!part.empty() && part != ".") parts.push_back(std::move(part));
    start = end + 1;
  }
  return parts;
}

// Is `path` `folder` itself or below it? Both absolute, without symbolic links or '..'.
bool is_within(const fs::path& path, const fs::path& folder) {
  auto at = path.begin();
  for (const fs::path& part : folder) {
    if (at == path.end() || *at != part) return false;
    ++at;
  }
  return true;
}

std::string read_link(const fs::path& link, const std::string& context) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(link, ec);
  if (ec) {
    fail(ErrorCode::kIoError, context, ": cannot read the symbolic link '", link.string(),
         "': ", ec.message());
  }
  return target.string();
}

std::string_view file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a plain file";
}

class Resolver {
 public:
  Resolver(fs::path real_base, const std::string& location, const std::string& shown,
           const std::string& context)
      : real_base_(std::move(real_base)), location_(location), shown_(shown), context_(context) {}

  // Walks `location` from the real base folder the way the kernel would, but looks at (lstat)
  // only entries inside the folder or on the way to it; returns the real path of what it names.
  fs::path run() {
    const std::vector<std::string> first = split_path(location_);
    std::deque<std::string> pending(first.begin(), first.end());
    fs::path current = real_base_;
    int links = 0;
    while (!pending.empty()) {
      const std::string part = std::move(pending.front());
      pending.pop_front();
      if (part == "/") {
        current = "/";
        continue;
      }
      // `current` never contains a link, so its lexical parent is its real parent.
      if (part == "..") {
        current = current.parent_path();
        continue;
      }
      fs::path next = current / part;
      if (!is_within(next, real_base_) && !is_within(real_base_, next)) fail_outside();
      struct stat status {};
      if (::lstat(next.c_str(), &status) != 0) fail_lookup(errno);
      if (S_ISLNK(status.st_mode)) {
        if (++links > kMaxSymlinks) {
          fail(ErrorCode::kCorruptFile, context_, ": external data location '", location_,
               "' passes through more than ", kMaxSymlinks, " symbolic links (a loop?)");
        }
        // A relative target continues from the link's folder, which is `current`.
        const std::vector<std::string> target = split_path(read_link(next, context_));
        pending.insert(pending.begin(), target.begin(), target.end());
        continue;
      }
      current = std::move(next);
    }
    if (!is_within(current, real_base_) || current == real_base_) {
      if (current != real_base_) fail_outside();
      fail(ErrorCode::kCorruptFile, context_, ": external data location '", location_,
           "' names the model's folder itself, not a file");
    }
    return current;
  }

 private:
  [[noreturn]] void fail_outside() const {
    fail(ErrorCode::kCorruptFile, context_, ": external data location '", location_,
         "' leads outside the model's folder '", real_base_.string(),
         "' through a symbolic link; external data must stay inside the folder");
  }

  [[noreturn]] void fail_lookup(int error) const {
    if (error == ENOENT || error == ENOTDIR) {
      fail(ErrorCode::kNotFound, context_, ": external data file '", shown_, "' does not exist");
    }
    fail(ErrorCode::kIoError, context_, ": cannot examine external data file '", shown_,
         "': ", errno_text(error));
  }

  const fs::path real_base_;
  const std::string& location_;
  const std::string& shown_;
  const std::string& context_;
};

}  // namespace

ExternalDataFile::ExternalDataFile(int fd, std::string shown_path, uint64_t size)
    : fd_(fd), shown_path_(std::move(shown_path)), size_(size) {}

ExternalDataFile::ExternalDataFile(ExternalDataFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      shown_path_(std::move(other.shown_path_)),
      size_(other.size_) {}

ExternalDataFile& ExternalDataFile::operator=(ExternalDataFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    shown_path_ = std::move(other.shown_path_);
    size_ = other.size_;
  }
  return *this;
}

ExternalDataFile::~ExternalDataFile() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t ExternalDataFile::read_at(uint64_t offset, void* out, uint64_t length) const {
  auto* dst = static_cast<char*>(out);
  uint64_t done = 0;
  while (done < length) {
    const ssize_t got = ::pread(fd_, dst + done, static_cast<size_t>(length - done),
                                static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      fail(ErrorCode::kIoError, "error reading external data file '", shown_path_, "' at offset ",
           offset + done, ": ", errno_text(errno));
    }
    if (got == 0) break;
    done += static_cast<uint64_t>(got);
  }
  return done;
}

ExternalDataFile open_external_data(const std::string& base_dir, const std::string& location,
                                    const std::string& context) {
  if (base_dir.empty()) {
    fail(ErrorCode::kInvalidArgument, context, ": open_external_data needs the model's folder");
  }
  check_location_text(location, context);
  const std::string shown = (fs::path(base_dir) / location).string();
  std::error_code ec;
  const fs::path real_base = fs::canonical(base_dir, ec);
  if (ec) {
    fail(ErrorCode::kIoError, context, ": cannot resolve the model's folder '", base_dir,
         "': ", ec.message());
  }
  const fs::path real = Resolver(real_base, location, shown, context).run();

  // Refuse anything but a regular file before opening it: opening a device can have effects.
  struct stat status {};
  if (::lstat(real.c_str(), &status) != 0) {
    fail(ErrorCode::kIoError, context, ": cannot examine external data file '", shown,
         "': ", errno_text(errno));
  }
  auto fail_not_regular = [&](mode_t mode) {
    fail(ErrorCode::kCorruptFile, context, ": external data path '", shown, "' is ",
         file_kind(mode), ", not a regular file");
  };
  if (!S_ISREG(status.st_mode)) fail_not_regular(status.st_mode);
  // O_NOFOLLOW and O_NONBLOCK: should the entry have been replaced since, by a link or a FIFO,
  // the open fails or returns at once, and fstat below sees what was really opened.
  const int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    fail(ErrorCode::kIoError, context, ": cannot open external data file '", shown,
         "': ", errno_text(errno));
  }
  struct stat opened {};
  if (::fstat(fd, &opened) != 0) {
    const int error = errno;
    ::close(fd);
    fail(ErrorCode::kIoError, context, ": cannot examine external data file '", shown,
         "': ", errno_text(error));
  }
  if (!S_ISREG(opened.st_mode)) {
    ::close(fd);
    fail_not_regular(opened.st_mode);
  }
  return ExternalDataFile(fd, shown, static_cast<uint64_t>(opened.st_size));
}

}  // namespace kiln::onnx
