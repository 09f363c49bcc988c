#include "compression/lossy_jpeg.h"

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
// clang-format on

#include <csetjmp>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flowtape::compression {
namespace {

// libjpeg reports errors through error_exit, which must not return: it
// longjmps back to the function that called setjmp. Those functions (the
// *Raw ones) keep only trivially destructible locals, so nothing is skipped
// by the jump; everything with a destructor lives in their callers.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnError(j_common_ptr c) {
  auto* e = reinterpret_cast<ErrorManager*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}
// Warnings (level < 0: corrupt data, premature end) are errors here; trace
// messages are dropped.
void OnMessage(j_common_ptr c, int level) {
  if (level < 0) OnError(c);
}
void Fail(ErrorManager* e, const char* text) {
  std::snprintf(e->message, sizeof(e->message), "%s", text);
}

// A destination appending to a vector.
struct VectorDest {
  jpeg_destination_mgr pub;
  std::vector<uint8_t>* out;
  JOCTET buffer[4096];
};
void InitDest(j_compress_ptr c) {
  auto* d = reinterpret_cast<VectorDest*>(c->dest);
  d->pub.next_output_byte = d->buffer;
  d->pub.free_in_buffer = sizeof(d->buffer);
}
boolean EmptyDest(j_compress_ptr c) {
  auto* d = reinterpret_cast<VectorDest*>(c->dest);
  d->out->insert(d->out->end(), d->buffer, d->buffer + sizeof(d->buffer));
  InitDest(c);
  return TRUE;
}
void TermDest(j_compress_ptr c) {
  auto* d = reinterpret_cast<VectorDest*>(c->dest);
  d->out->insert(d->out->end(), d->buffer,
                 d->buffer + sizeof(d->buffer) - d->pub.free_in_buffer);
}

enum class Mode { kFile, kTables, kAbbreviated };

bool CompressRaw(jpeg_compress_struct* c, ErrorManager* err, VectorDest* dest,
                 const GrayImage* image, int quality, bool optimize,
                 Mode mode) {
  c->err = jpeg_std_error(&err->pub);
  err->pub.error_exit = OnError;
  err->pub.emit_message = OnMessage;
  if (setjmp(err->jump)) return false;
  jpeg_create_compress(c);
  dest->pub.init_destination = InitDest;
  dest->pub.empty_output_buffer = EmptyDest;
  dest->pub.term_destination = TermDest;
  c->dest = &dest->pub;
  c->in_color_space = JCS_GRAYSCALE;
  c->input_components = 1;
  if (image != nullptr) {
    c->image_width = static_cast<JDIMENSION>(image->width);
    c->image_height = static_cast<JDIMENSION>(image->height);
  }
  jpeg_set_defaults(c);
  jpeg_set_quality(c, quality, TRUE);
  if (mode == Mode::kTables) {
    jpeg_write_tables(c);
    return true;
  }
  c->optimize_coding = mode == Mode::kFile && optimize ? TRUE : FALSE;
  if (mode == Mode::kAbbreviated) {
    c->write_JFIF_header = FALSE;
    jpeg_suppress_tables(c, TRUE);
  }
  jpeg_start_compress(c, mode == Mode::kFile ? TRUE : FALSE);
  while (c->next_scanline < c->image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(image->pixels.data() +
                                        size_t{c->next_scanline} *
                                            static_cast<size_t>(image->width));
    jpeg_write_scanlines(c, &row, 1);
  }
  jpeg_finish_compress(c);
  return true;
}

absl::StatusOr<std::vector<uint8_t>> Compress(const GrayImage* image,
                                              int quality, bool optimize,
                                              Mode mode) {
  if (quality < 1 || quality > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("jpeg: quality ", quality, " outside 1..100"));
  }
  if (image != nullptr &&
      (image->height < 1 || image->height > 65500 || image->width < 1 ||
       image->width > 65500 ||
       image->pixels.size() != static_cast<size_t>(image->height) *
                                   static_cast<size_t>(image->width))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "jpeg: image ", image->height, " x ", image->width, " with ",
        image->pixels.size(), " pixels (sides 1..65500, height x width)"));
  }
  std::vector<uint8_t> out;
  jpeg_compress_struct c;
  std::memset(&c, 0, sizeof(c));
  ErrorManager err;
  VectorDest dest;
  dest.out = &out;
  const bool ok = CompressRaw(&c, &err, &dest, image, quality, optimize, mode);
  jpeg_destroy_compress(&c);
  if (!ok) {
    return absl::InternalError(absl::StrCat("jpeg: encoding: ", err.message));
  }
  return out;
}

bool DecompressRaw(jpeg_decompress_struct* d, ErrorManager* err,
                   absl::Span<const uint8_t> tables,
                   absl::Span<const uint8_t> bytes, GrayImage* image) {
  d->err = jpeg_std_error(&err->pub);
  err->pub.error_exit = OnError;
  err->pub.emit_message = OnMessage;
  if (setjmp(err->jump)) return false;
  jpeg_create_decompress(d);
  if (!tables.empty()) {
    jpeg_mem_src(d, tables.data(), static_cast<unsigned long>(tables.size()));
    if (jpeg_read_header(d, FALSE) != JPEG_HEADER_TABLES_ONLY) {
      Fail(err, "the tables stream holds an image");
      return false;
    }
  }
  jpeg_mem_src(d, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(d, TRUE);
  if (d->num_components != 1 || d->jpeg_color_space != JCS_GRAYSCALE) {
    Fail(err, "not a grayscale JPEG");
    return false;
  }
  if (static_cast<int64_t>(d->image_width) * d->image_height > kJpegMaxPixels) {
    Fail(err, "image larger than kJpegMaxPixels");
    return false;
  }
  d->out_color_space = JCS_GRAYSCALE;
  jpeg_start_decompress(d);
  image->height = static_cast<int>(d->output_height);
  image->width = static_cast<int>(d->output_width);
  image->pixels.resize(static_cast<size_t>(image->height) * image->width);
  while (d->output_scanline < d->output_height) {
    JSAMPROW row =
        image->pixels.data() + size_t{d->output_scanline} * d->output_width;
    jpeg_read_scanlines(d, &row, 1);
  }
  jpeg_finish_decompress(d);
  return true;
}

absl::StatusOr<GrayImage> Decompress(absl::Span<const uint8_t> tables,
                                     absl::Span<const uint8_t> bytes) {
  // libjpeg's memory source rejects an empty buffer; a null pointer with
  // size 0 is the same error, reported before libjpeg sees it.
  if (bytes.empty()) return absl::DataLossError("jpeg: empty stream");
  GrayImage image;
  jpeg_decompress_struct d;
  std::memset(&d, 0, sizeof(d));
  ErrorManager err;
  const bool ok = DecompressRaw(&d, &err, tables, bytes, &image);
  jpeg_destroy_decompress(&d);
  if (!ok) {
    return absl::DataLossError(absl::StrCat("jpeg: decoding: ", err.message));
  }
  return image;
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> EncodeJpeg(const GrayImage& image,
                                                int quality,
                                                bool optimize_huffman) {
  return Compress(&image, quality, optimize_huffman, Mode::kFile);
}

absl::StatusOr<GrayImage> DecodeJpeg(absl::Span<const uint8_t> bytes) {
  return Decompress({}, bytes);
}

absl::StatusOr<std::vector<uint8_t>> JpegTables(int quality) {
  return Compress(nullptr, quality, false, Mode::kTables);
}

absl::StatusOr<std::vector<uint8_t>> EncodeJpegAbbreviated(
    const GrayImage& image, int quality) {
  return Compress(&image, quality, false, Mode::kAbbreviated);
}

absl::StatusOr<GrayImage> DecodeJpegAbbreviated(
    absl::Span<const uint8_t> tables, absl::Span<const uint8_t> bytes) {
  if (tables.empty()) return absl::DataLossError("jpeg: empty tables stream");
  return Decompress(tables, bytes);
}

absl::StatusOr<size_t> JpegScanBytes(absl::Span<const uint8_t> stream) {
  const size_t n = stream.size();
  if (n < 4 || stream[n - 2] != 0xFF || stream[n - 1] != 0xD9) {
    return absl::DataLossError("jpeg: the stream does not end with EOI");
  }
  // Marker segments from after SOI up to SOS: FF xx, then a 2-byte length
  // that counts itself.
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (stream[pos] != 0xFF) {
      return absl::DataLossError(absl::StrCat("jpeg: no marker at byte ", pos));
    }
    const size_t length = size_t{stream[pos + 2]} << 8 | stream[pos + 3];
    if (length < 2 || pos + 2 + length > n - 2) {
      return absl::DataLossError(
          absl::StrCat("jpeg: segment at byte ", pos, " overruns the stream"));
    }
    if (stream[pos + 1] == 0xDA) return n - 2 - (pos + 2 + length);
    pos += 2 + length;
  }
  return absl::DataLossError("jpeg: no SOS segment");
}

}  // namespace flowtape::compression
