// Baseline JPEG (Debian's libjpeg-turbo, libjpeg-dev) for 8-bit grayscale
// images: the reference curve of the lossy codec's rate-distortion
// comparison (compression/lossy.h).
//
// Quality q in 1..100 scales the standard (Annex K) quantisation tables as
// libjpeg's jpeg_set_quality(q, force_baseline = TRUE) does:
//   scale = q < 50 ? 5000 / q : 200 - 2 q  (percent),
//   Q_ij = clamp((T_ij scale + 50) / 100, 1, 255).
// Two ways to count bytes:
//   EncodeJpeg:   a complete JFIF file (markers, quantisation and Huffman
//                 tables); Huffman tables optimised for the image when
//                 optimize_huffman (entropy coding only: same pixels).
//   JpegTables + EncodeJpegAbbreviated: the tables once (a tables-only
//                 datastream) and, per image, an abbreviated datastream
//                 without tables (standard Huffman tables), as JPEG allows
//                 for a set of images that share them; decode with
//                 DecodeJpegAbbreviated. For tiny images (28 x 28) the
//                 tables are most of a file, so a set shares them.
// Both decode to the same pixels at the same quality.
// JpegScanBytes: the entropy-coded data of a (full or abbreviated) stream,
// the bytes after the SOS segment and before the final EOI marker: what a
// set of images coded together would pay per image once the per-image
// markers (SOI, SOF, SOS, EOI: 27 bytes for a grayscale baseline
// abbreviated stream) are shared too. DataLoss unless the stream ends with
// EOI and holds one SOS segment that fits.
//
// Errors: InvalidArgument for quality outside 1..100 or an image whose size
// is outside 1..65500 a side or whose pixel count differs from height x
// width; DataLoss for anything libjpeg rejects or warns about while decoding
// (truncated or corrupt data, a tables-only stream given as an image), for
// an image that is not 1-component grayscale, or larger than
// kJpegMaxPixels. libjpeg's errors never exit the process (they unwind to the
// caller with its message) and nothing is printed.
#ifndef FLOWTAPE_COMPRESSION_LOSSY_JPEG_H_
#define FLOWTAPE_COMPRESSION_LOSSY_JPEG_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace flowtape::compression {

inline constexpr int64_t kJpegMaxPixels = int64_t{1} << 26;

struct GrayImage {
  int height = 0, width = 0;
  std::vector<uint8_t> pixels;  // row-major, height x width
};

absl::StatusOr<std::vector<uint8_t>> EncodeJpeg(const GrayImage& image,
                                                int quality,
                                                bool optimize_huffman = true);
absl::StatusOr<GrayImage> DecodeJpeg(absl::Span<const uint8_t> bytes);

absl::StatusOr<std::vector<uint8_t>> JpegTables(int quality);
absl::StatusOr<std::vector<uint8_t>> EncodeJpegAbbreviated(
    const GrayImage& image, int quality);
absl::StatusOr<GrayImage> DecodeJpegAbbreviated(
    absl::Span<const uint8_t> tables, absl::Span<const uint8_t> bytes);

absl::StatusOr<size_t> JpegScanBytes(absl::Span<const uint8_t> stream);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_LOSSY_JPEG_H_
