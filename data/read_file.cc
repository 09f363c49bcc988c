#include "data/read_file.h"

#include <zlib.h>

#include <fstream>

#include "absl/strings/str_cat.h"

namespace flowtape::data {

absl::StatusOr<std::string> ReadFileMaybeGz(const std::string& path) {
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr)
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
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
