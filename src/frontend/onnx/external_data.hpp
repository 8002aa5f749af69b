// Opening the files that hold an ONNX model's external tensor data, confined to the model's
// folder: the model is untrusted, so its `location` strings must not reach other files through
// absolute paths, '..' or symbolic links, nor make the importer read a device or block on a FIFO.
#pragma once

#include <cstdint>
#include <string>

namespace kiln::onnx {

// An open, regular external data file. Move-only; closes the file when destroyed.
class ExternalDataFile {
 public:
  ExternalDataFile(int fd, std::string shown_path, uint64_t size);
  ExternalDataFile(ExternalDataFile&& other) noexcept;
  ExternalDataFile& operator=(ExternalDataFile&& other) noexcept;
  ExternalDataFile(const ExternalDataFile&) = delete;
  ExternalDataFile& operator=(const ExternalDataFile&) = delete;
  ~ExternalDataFile();

  // base_dir / location, as messages show it.
  const std::string& shown_path() const { return shown_path_; }
  // The file's size when it was opened.
  uint64_t size() const { return size_; }
  // Reads up to `length` bytes at `offset` into `out`. Returns the count read, which is less than
  // `length` only at the end of the file. Throws kiln::Error(kIoError) naming the path on a read
  // error.
  uint64_t read_at(uint64_t offset, void* out, uint64_t length) const;

 private:
  int fd_ = -1;
  std::string shown_path_;
  uint64_t size_ = 0;
};

// Opens the external data file `location` (as written in the model) relative to `base_dir` (the
// model's folder). Symbolic links are followed one component at a time and only while they stay
// inside the real `base_dir` (or pass through its ancestors): nothing outside the folder is
// looked at, so an error does not tell whether a path outside exists. Hard links are not refused
// (docs/security.md says why). `context` (e.g. "model.onnx: tensor 'W'") starts every message.
// Needs: a non-empty base_dir. Returns the open file.
// Throws kiln::Error:
//   kCorruptFile - an empty location, one with a NUL byte, an absolute one, one with a '..'
//                  component; a symbolic link that leads outside base_dir, or more than 40 links
//                  on the way (a loop); a file that is not a regular file (a directory, FIFO,
//                  device or socket);
//   kNotFound    - no such file inside base_dir (a dangling link inside the folder included);
//   kIoError     - base_dir cannot be resolved, or the file cannot be opened or examined.
ExternalDataFile open_external_data(const std::string& base_dir, const std::string& location,
                                    const std::string& context);

}  // namespace kiln::onnx
