#include "data/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flowtape::data {
namespace {

absl::Status IoError(const std::string& what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat("'", path, "': ", what, ": ", std::strerror(errno)));
}

std::string Dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Base(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void RemoveStaleTemporaries(const std::string& path) {
  const std::string dir = Dir(path), prefix = Base(path) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = ::readdir(d)) {
    const absl::string_view name = e->d_name;
    if (!absl::StartsWith(name, prefix)) continue;
    const absl::string_view rest = name.substr(prefix.size());
    const size_t dot = rest.find('.');
    if (dot == absl::string_view::npos || dot == 0 || dot > 10 ||
        rest.size() - dot - 1 != 6)
      continue;
    const absl::string_view digits = rest.substr(0, dot);
    int64_t pid = 0;
    if (!std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(digits, &pid) || pid <= 0 || pid > INT_MAX ||
        pid == ::getpid())
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    const std::string file = absl::StrCat(dir, "/", name);
    const int fd =
        ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        ::flock(fd, LOCK_EX | LOCK_NB) == 0)
      ::unlink(file.c_str());
    ::close(fd);
  }
  ::closedir(d);
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".XXXXXX");
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) return IoError("creating a temporary file failed", path);
  // Held until the descriptor closes (or the process dies): marks the
  // temporary as live for RemoveStaleTemporaries.
  ::flock(fd, LOCK_EX | LOCK_NB);
  auto fail = [&](const std::string& what) {
    absl::Status s = IoError(what, path);
    ::unlink(tmp.c_str());
    ::close(fd);
    return s;
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return fail("write");
    done += static_cast<size_t>(w);
  }
  // mkstemp makes the file 0600; the result is an ordinary 0644 file.
  if (::fchmod(fd, 0644) != 0) return fail("fchmod");
  if (::fsync(fd) != 0) return fail("fsync");
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return fail("rename from " + tmp);
  if (::close(fd) != 0) return IoError("close", path);
  // Make the rename itself durable.
  const int dfd = ::open(Dir(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  RemoveStaleTemporaries(path);
  return absl::OkStatus();
}

}  // namespace flowtape::data
