#include "data/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace flowtape::data {
namespace {

std::string KindOf(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

}  // namespace

std::string NonRegularKind(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return KindOf(st.st_mode);
}

absl::StatusOr<std::string> ReadFileMaybeGz(const std::string& path,
                                            int64_t max_bytes,
                                            const std::string& what) {
  // O_NONBLOCK: opening a FIFO with no writer must not block; for regular
  // files (the only ones read) the flag has no effect.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat ", path));
  }
  if (const std::string kind = KindOf(st.st_mode); !kind.empty()) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", kind, ", not a regular file; ", what,
                     " loaders read regular files only"));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", st.st_size, " bytes, above the ", max_bytes,
                     "-byte limit for ", what, " files"));
  }
  gzFile f = gzdopen(fd, "rb");  // owns fd from here on
  if (f == nullptr) {
    ::close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot read ", path, ": zlib could not allocate"));
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      return absl::DataLossError(
          absl::StrCat(path, ": corrupt compressed data (", msg, ")"));
    }
    if (n == 0) break;
    if (static_cast<int64_t>(out.size()) + n > max_bytes) {
      gzclose(f);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": decompresses to more than ", max_bytes,
                       " bytes, the limit for ", what,
                       " files (corrupt, or a decompression bomb)"));
    }
    out.append(buf, n);
  }
  // A truncated gzip stream ends without error from gzread but gzclose
  // reports Z_BUF_ERROR.
  if (int rc = gzclose(f); rc != Z_OK)
    return absl::DataLossError(
        absl::StrCat(path, ": truncated compressed data (zlib code ", rc, ")"));
  return out;
}

}  // namespace flowtape::data
