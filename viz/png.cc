#include "viz/png.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"

namespace flowtape::viz {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

}  // namespace

Image::Image(int w, int h, Rgb fill) : width(w), height(h) {
  FT_CHECK(w > 0 && h > 0, "image: size ", w, "x", h);
  rgb.resize(3 * static_cast<size_t>(w) * h);
  for (size_t i = 0; i < rgb.size(); i += 3) {
    rgb[i] = fill.r;
    rgb[i + 1] = fill.g;
    rgb[i + 2] = fill.b;
  }
}

Rgb Image::at(int x, int y) const {
  size_t i = 3 * (static_cast<size_t>(y) * width + x);
  return {rgb[i], rgb[i + 1], rgb[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  size_t i = 3 * (static_cast<size_t>(y) * width + x);
  rgb[i] = c.r;
  rgb[i + 1] = c.g;
  rgb[i + 2] = c.b;
}

absl::Status WritePng(const std::string& path, const Image& image) {
  FT_CHECK(
      image.rgb.size() == 3 * static_cast<size_t>(image.width) * image.height,
      "write_png: pixel buffer does not match ", image.width, "x",
      image.height);
  File f(std::fopen(path.c_str(), "wb"));
  if (!f)
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot open ", path, " for writing"));
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    return absl::ResourceExhaustedError("libpng: cannot allocate a writer");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return absl::InternalError(absl::StrCat("libpng failed writing ", path));
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y)
    png_write_row(png, const_cast<png_bytep>(image.rgb.data()) +
                           3 * static_cast<size_t>(y) * image.width);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(f.get()) != 0)
    return absl::DataLossError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

namespace {

// libpng errors longjmp back to ReadPng with the message kept here.
struct ReadState {
  std::string error;
};

void OnPngError(png_structp png, png_const_charp message) {
  auto* state = static_cast<ReadState*>(png_get_error_ptr(png));
  state->error = message ? message : "unknown libpng error";
  png_longjmp(png, 1);
}
void OnPngWarning(png_structp, png_const_charp) {}

std::string FileKind(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Largest deflate expansion: 258-byte matches at about 2 bits each.
constexpr int64_t kMaxDeflateRatio = 1032;

// The header's size against the limits in png.h, before any pixel buffer.
absl::Status CheckLimits(const std::string& path, uint32_t w, uint32_t h,
                         int bits_per_pixel, int64_t file_bytes) {
  if (w > static_cast<uint32_t>(kPngMaxSide) ||
      h > static_cast<uint32_t>(kPngMaxSide))
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header declares ", w, " x ", h, " pixels, above the limit of ",
        kPngMaxSide, " pixels per side"));
  const int64_t pixels = int64_t{w} * h;
  if (pixels > kPngMaxPixels)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header declares ", w, " x ", h, " = ", pixels,
                     " pixels, above the limit of ", kPngMaxPixels));
  const int64_t raw = int64_t{h} * ((int64_t{w} * bits_per_pixel + 7) / 8);
  const int64_t min_file = raw / kMaxDeflateRatio;
  if (file_bytes < min_file)
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": truncated or corrupt: its ", w, " x ", h,
        " pixels need at least ", min_file, " compressed bytes (", raw,
        " bytes at most 1032:1), but the file has ", file_bytes));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Image> ReadPng(const std::string& path) {
  // Non-blocking open: a FIFO without a writer must not hang; fstat before
  // reading a byte so devices (/dev/zero) and directories are refused.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !FileKind(st.st_mode).empty()) {
    const std::string kind =
        ::fstat(fd, &st) != 0 ? "not stat-able" : FileKind(st.st_mode);
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", kind, ", not a regular PNG file"));
  }
  const int64_t file_bytes = st.st_size;
  if (file_bytes > kPngMaxFileBytes) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", file_bytes, " bytes, above the ",
                     kPngMaxFileBytes, "-byte limit for PNG files"));
  }
  File f(::fdopen(fd, "rb"));
  if (!f) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open ", path));
  }
  unsigned char sig[8] = {};
  if (std::fread(sig, 1, 8, f.get()) != 8 || png_sig_cmp(sig, 0, 8) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a PNG file (bad signature)"));
  // IHDR comes first (length 13, "IHDR", width, height): its sides are
  // checked here so an oversized header gets the sizes in the message
  // (libpng's user limits, set below, would stop it with a generic one).
  unsigned char ihdr[16] = {};
  if (std::fread(ihdr, 1, 16, f.get()) == 16 &&
      std::memcmp(ihdr + 4, "IHDR", 4) == 0) {
    auto be32 = [&](int o) {
      return uint32_t{ihdr[o]} << 24 | uint32_t{ihdr[o + 1]} << 16 |
             uint32_t{ihdr[o + 2]} << 8 | uint32_t{ihdr[o + 3]};
    };
    const uint32_t w = be32(8), h = be32(12);
    if (w > static_cast<uint32_t>(kPngMaxSide) ||
        h > static_cast<uint32_t>(kPngMaxSide))
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": header declares ", w, " x ", h,
          " pixels, above the limit of ", kPngMaxSide, " pixels per side"));
  }
  if (std::fseek(f.get(), 8, SEEK_SET) != 0)
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot seek"));
  ReadState state;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state,
                                           OnPngError, OnPngWarning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return absl::ResourceExhaustedError("libpng: cannot allocate a reader");
  }
  Image image;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": corrupt or truncated PNG (libpng: ", state.error, ")"));
  }
  png_init_io(png, f.get());
  png_set_sig_bytes(png, 8);
  // libpng's own limits back up the checks below; ancillary chunks (text,
  // ICC profiles) are capped too.
  png_set_user_limits(png, kPngMaxSide, kPngMaxSide);
  png_set_chunk_malloc_max(png, 8 << 20);
  png_set_chunk_cache_max(png, 1000);
  png_read_info(png, info);
  const uint32_t w = png_get_image_width(png, info);
  const uint32_t h = png_get_image_height(png, info);
  const int bits = png_get_bit_depth(png, info) * png_get_channels(png, info);
  absl::Status limits = CheckLimits(path, w, h, bits, file_bytes);
  if (!limits.ok()) {
    png_destroy_read_struct(&png, &info, nullptr);
    return limits;
  }
  png_set_expand(png);  // palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_read_update_info(png, info);
  image = Image(static_cast<int>(w), static_cast<int>(h));
  for (uint32_t y = 0; y < h; ++y)
    png_read_row(png, image.rgb.data() + 3 * static_cast<size_t>(y) * w,
                 nullptr);
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

Image HStack(const std::vector<Image>& images, int pad) {
  FT_CHECK(!images.empty(), "hstack: no images");
  int w = -pad, h = 0;
  for (const Image& im : images) {
    w += im.width + pad;
    h = std::max(h, im.height);
  }
  Image out(w, h);
  int x0 = 0;
  for (const Image& im : images) {
    for (int y = 0; y < im.height; ++y)
      for (int x = 0; x < im.width; ++x) out.set(x0 + x, y, im.at(x, y));
    x0 += im.width + pad;
  }
  return out;
}

}  // namespace flowtape::viz
