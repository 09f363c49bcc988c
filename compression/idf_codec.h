// Lossless image coding with a multi-scale integer discrete flow (idf.h):
// the flow maps the pixels x to integer latents z_{L-1}, ..., z_0, and rANS
// (rans.h) codes every latent with the frequency table of its prior
// (frequencies.h); decoding reads them and returns x = f^-1(z).
//
// Coding the latents. Symbol s in 0..kIdfSymbols-1 stands for the value
// kIdfLow + s (-256..511); the table is frequencies.h's discretised logistic
// mixture over those symbols (edge bins open: symbol 0 holds all of
// z <= kIdfLow, the last all of z >= kIdfHigh) with component weights
// exp(l - max l), means mu - kIdfLow and scales s (idf.h), quantised by
// QuantizeCumulative at kIdfPrecisionBits = 18 (every symbol f >= 1; at
// most 768 / 2^18 of the mass, <= 0.0043 bits per symbol, goes to the floor).
// A latent at or beyond an edge is escaped: its edge symbol, then the offset
// kIdfLow - z or z - kIdfHigh as a uniform 24-bit symbol (|z| <= 255 + 16 *
// 8 * 4096 < 2^24). The final prior's D_{L-1} tables are built once; a
// factored-out latent's table is built per image from its prior net's
// outputs at that pixel.
//
// Order, image by image (rans.h is first-in first-out, the decoder reads in
// the order written): z_{L-1} (channel-major), then for l = L-2..0: the
// prior net of level l on the kept channels h_{l+1}, then z_l. The decoder
// reads z_{L-1}, inverts the couplings (and squeeze) of level L-1 to get the
// kept channels of level L-2, computes that level's priors, reads z_{L-2},
// inverts level L-2 on [kept, z_{L-2}], and so on down to x. Ideal cost: sum
// -log2(f / 2^18) (+ 24 bits per escape); the stream is within 8 bytes plus
// 0.0011 bits per symbol of it (rans.h), and the interior bins are the
// prior's P(z) up to the quantisation.
//
// Determinism. The encoder and decoder compute the latents and tables with
// code in this target, deterministic_math and frequencies only, all compiled
// with -ffp-contract=off (Bazel copts; CMake compiles compression/ so): the
// convnets in float64 with +, *, max and std::round in a fixed order (output
// channel o: h = b_o, then for each input channel i, kernel row p, column q
// in order and each pixel, h += W[o, i, p, q] u[i, neighbour], zero padding
// skipped), the weights exp(l - max l) and scales exp(4 g) with DetExp
// (deterministic_math.h), the tables by frequencies.h (float64, its stated
// determinism). No threads, no libm transcendental, no BLAS, no arithmetic
// of autodiff/, nn/ or flows/: Create only copies the flow's parameters (as
// float64, exact from float32 too). Guarantee: the same model file gives the
// same tables and latents, hence the same bytes, and a file decodes to the
// same pixels, on any platform with IEEE binary64, round-to-nearest-even, no
// excess precision and subnormals (x86-64 SSE2, AArch64), whatever the
// compiler, libm or -march, as long as these targets keep -ffp-contract=off.
// tests/compression:codec_golden_test pins the bytes of a seeded model and
// images and the bits of the float64 values that are quantised; CI runs it
// in the default build and with -O2 -march=native (x86-64; AArch64 rests on
// the argument above, no run checks it). Not guaranteed: these targets built
// with FMA contraction or -ffast-math (a compiler that reassociates), x87
// arithmetic, flush-to-zero modes; IdfCodeStats::ideal_bits (libm's log2, a
// statistic outside the bytes); and the model itself: training runs on
// autodiff/ (multiply-adds may fuse, threads split sums), so the same seed
// may train parameters that differ in their last bits on another build or
// machine. The promise is per model file: decode with the file that encoded
// (the model id below refuses any other). The autodiff model (idf.h) computes
// the same map with other kernels and may round a translation within ~1e-16
// of a half differently: it serves training and the reported NLL, never
// coding.
//
// Container (all integers little-endian), kIdfHeaderBytes = 40, then:
//   char[8] magic "FTIDFC\0\1"   uint32 version (2)
//   uint32  model id: CRC-32 (zlib) of the canonical model: the options'
//           JSON text, then per parameter its name and float64 values
//   uint32  count N (1..2^20)     uint32 channels (1)
//   uint32  height, width (those of the model)
//   uint64  stream bytes S        S bytes: the rANS stream
//   uint32  CRC-32 of every byte before it
// so a file is 44 + S bytes. Version 1 (the single-scale flow's latents in
// pixel order) is recognised and refused: InvalidArgument "IDF container
// version 1 (single-scale model) is no longer supported". ParseIdfContainer
// errors: DataLoss for a file shorter than a header, a length other than
// 44 + S ("truncated" / "trailing bytes"), a checksum mismatch;
// InvalidArgument for a bad magic ("not an IDF container"), an unsupported
// version, channels != 1, sizes out of range. Decompress adds:
// InvalidArgument when the model id or the image shape is not the model's
// (naming both); DataLoss when the stream is too short for N images (checked
// before decoding: rans.h's 8 S >= 32 + sum_k (-log2(f_k / 2^18) + 2 log2(1 -
// 2^-13)), and every f_k <= 2^18 - 767, so each term is at least 0.0039; this
// bounds the work any file can cause by its size), the rANS decoder fails, a
// decoded latent gives a prior with no valid table (a non-finite or
// overflowing parameter), a decoded pixel is outside 0..255, or the stream
// does not end exactly after the last image. No input makes it crash or
// allocate more than the N D pixels it returns.
#ifndef FLOWTAPE_COMPRESSION_IDF_CODEC_H_
#define FLOWTAPE_COMPRESSION_IDF_CODEC_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/frequencies.h"
#include "compression/idf.h"

namespace flowtape::compression {

inline constexpr int kIdfLow = -256;
inline constexpr int kIdfSymbols = 768;
inline constexpr int kIdfHigh = kIdfLow + kIdfSymbols - 1;
inline constexpr int kIdfPrecisionBits = 18;
inline constexpr int kIdfEscapeBits = 24;
inline constexpr int kIdfHeaderBytes = 40;
inline constexpr int64_t kIdfMaxImages = int64_t{1} << 20;

struct IdfContainer {
  uint32_t version = 2;
  uint32_t model_id = 0;
  int64_t count = 0;
  int64_t height = 0, width = 0;
  absl::string_view stream;  // into the parsed bytes
};
absl::StatusOr<IdfContainer> ParseIdfContainer(absl::string_view bytes);

struct IdfImages {
  int64_t count = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // count * height * width, row-major
};

struct IdfCodeStats {
  double ideal_bits = 0.0;  // sum of -log2(f / 2^18), escapes included
  int64_t escapes = 0;
};

class IdfCodec {
 public:
  // Copies the flow's parameters (as float64) and builds the final prior's
  // tables. InvalidArgument if one of them is not valid (a scale that
  // underflows to 0, a non-finite parameter); Compress returns the same
  // error for a conditional prior the images lead to.
  static absl::StatusOr<IdfCodec> Create(const IntegerDiscreteFlow& flow);

  uint32_t model_id() const { return model_id_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t dims() const { return height_ * width_; }

  // The integer map on one image (D values each, z in latent order, idf.h),
  // deterministic (above).
  void Forward(absl::Span<const int64_t> x, absl::Span<int64_t> z) const;
  void Inverse(absl::Span<const int64_t> z, absl::Span<int64_t> x) const;

  // The container of `images` (InvalidArgument unless its shape is the
  // model's and 1 <= count <= kIdfMaxImages).
  absl::StatusOr<std::string> Compress(const IdfImages& images,
                                       IdfCodeStats* stats = nullptr) const;
  absl::StatusOr<IdfImages> Decompress(absl::string_view container) const;

 private:
  struct Conv {
    int64_t in = 0, out = 0;
    std::vector<double> w, b;  // [out, in, 3, 3], [out]
  };
  using Net = std::vector<Conv>;
  struct Level {
    bool squeeze = false;
    IdfShape shape;  // after the squeeze
    std::vector<Net> couplings;
    Net prior;  // levels 0..L-2
  };
  IdfCodec() = default;
  // The convnet on u [in, h, w] -> out [out, h, w].
  static void RunNet(const Net& net, std::vector<double> u, int64_t h,
                     int64_t w, std::vector<double>& out);
  // Level l's couplings on v [C, h, w] in place (sign +1 forward, -1 inverse).
  void Couple(const Level& level, std::vector<int64_t>& v, int sign) const;
  // The tables of z_l (level l < L-1) given the kept channels, one per latent.
  absl::Status ConditionalTables(const Level& level,
                                 const std::vector<int64_t>& kept,
                                 std::vector<FrequencyTable>& tables) const;
  // Fills z_l given the kept channels (l = L-1 first, kept empty; then
  // l = L-2..0).
  using NextLatents = std::function<absl::Status(
      int l, const std::vector<int64_t>& kept, std::vector<int64_t>& zl)>;
  // x = f^-1 of the latents `next` gives, level by level.
  absl::Status InverseLevels(const NextLatents& next,
                             absl::Span<int64_t> x) const;
  // x -> latents (latent order); kept[l] = h_{l+1} for l < L-1.
  void Run(absl::Span<const int64_t> x, absl::Span<int64_t> z,
           std::vector<std::vector<int64_t>>* kept) const;

  int64_t height_ = 0, width_ = 0;
  int components_ = 0;
  uint32_t model_id_ = 0;
  std::vector<Level> levels_;
  std::vector<FrequencyTable> final_tables_;  // per latent of z_{L-1}
  double min_symbol_bits_ = 0.0;  // min over symbols of the rans.h bound term
};

// The IDX bytes (data/idx.h: magic 0x00000803, N x H x W) of `images`.
std::string IdxImageBytes(const IdfImages& images);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_IDF_CODEC_H_
