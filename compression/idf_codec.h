// Lossless image coding with an integer discrete flow (idf.h): the flow maps
// the pixels x to integer latents z = f(x), and rANS (rans.h) codes every
// z_d with the frequency table of its prior P_d (frequencies.h); decoding
// reads z and returns x = f^-1(z).
//
// Coding the latents. Symbol s in 0..kIdfSymbols-1 stands for the value
// kIdfLow + s (-256..511); the table is frequencies.h's discretised logistic
// mixture over those symbols (edge bins open: symbol 0 holds all of
// z <= kIdfLow, the last all of z >= kIdfHigh) with component weights
// exp(l - max l), means mu - kIdfLow and scales s (idf.h), at kIdfPrecisionBits
// = 18 (every symbol f >= 1, so at most 767 / 2^18 of the mass, <= 0.0042
// bits per symbol, goes to the floor). A latent at or beyond an edge is
// escaped: its edge symbol, then the offset kIdfLow - z or z - kIdfHigh as a
// uniform 24-bit symbol (|z| <= 255 + 64 * 4096 < 2^24). Image by image, latent
// d = 0..D-1 in order; decoding reads the same order (rans.h is first-in
// first-out). Ideal cost: sum -log2(f / 2^18) (+ 24 bits per escape); the
// stream is within 8 bytes plus 0.0011 bits per symbol of it (rans.h), and the
// interior bins are the prior's P_d(z) up to the quantisation.
//
// Determinism. The encoder and decoder compute the latents and tables with
// code in this target only, compiled with -ffp-contract=off: the couplings'
// MLPs in float64 with +, *, max and std::round in a fixed order (h_j = b_j,
// then h_j += u_i W_ij for i = 0..in-1, skipping u_i = 0, which adds an exact
// zero), the weights exp(l - max l) and scales exp(4 g) with DetExp
// (deterministic_math.h), the tables by frequencies.h (float64, its stated
// determinism). No threads, no libm transcendental, no BLAS. So the same
// model file gives the same tables and latents, hence the same bytes, on any
// platform with IEEE binary64, round-to-nearest-even, no excess precision and
// subnormals (x86-64 SSE2, AArch64), whatever the compiler or -march, as
// long as this target keeps -ffp-contract=off. What breaks it: building this
// target with FMA contraction or -ffast-math (a compiler that reassociates),
// x87 arithmetic, flush-to-zero modes. The autodiff model (idf.h) computes the
// same map with other kernels and may round a translation within ~1e-16 of a
// half differently: it serves training and the reported NLL, never coding.
//
// Container (all integers little-endian), kIdfHeaderBytes = 40, then:
//   char[8] magic "FTIDFC\0\1"   uint32 version (1)
//   uint32  model id: CRC-32 (zlib) of the canonical model: the options'
//           JSON text, then per parameter its name and float64 values
//   uint32  count N (1..2^20)     uint32 channels (1)
//   uint32  height, width (those of the model)
//   uint64  stream bytes S        S bytes: the rANS stream
//   uint32  CRC-32 of every byte before it
// so a file is 44 + S bytes. ParseIdfContainer errors: DataLoss for a file
// shorter than a header, a length other than 44 + S ("truncated" / "trailing
// bytes"), a checksum mismatch; InvalidArgument for a bad magic ("not an IDF
// container"), an unsupported version, channels != 1, sizes out of range.
// Decompress adds: InvalidArgument when the model id or the image shape is
// not the model's (naming both); DataLoss when the stream is too short for N
// images (checked before decoding: rans.h's 8 S >= 32 + sum_k (-log2(f_k /
// 2^18) + 2 log2(1 - 2^-13)), each term at least -log2(max f / 2^18) -
// 3.6e-4 > 0; this bounds the work any file can cause by its size), the rANS
// decoder fails, a decoded pixel is outside 0..255, or the stream does not end
// exactly after the last image. No input makes it crash or allocate more than
// the N D pixels it returns.
#ifndef FLOWTAPE_COMPRESSION_IDF_CODEC_H_
#define FLOWTAPE_COMPRESSION_IDF_CODEC_H_

#include <cstdint>
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
  uint32_t version = 1;
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
  // Copies the flow's parameters (as float64) and builds the D tables.
  // InvalidArgument if a prior's parameters give no valid table (a scale that
  // underflows to 0, a non-finite parameter).
  static absl::StatusOr<IdfCodec> Create(const IntegerDiscreteFlow& flow);

  uint32_t model_id() const { return model_id_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t dims() const { return height_ * width_; }

  // The integer map on one image (D values each), deterministic (above).
  void Forward(absl::Span<const int64_t> x, absl::Span<int64_t> z) const;
  void Inverse(absl::Span<const int64_t> z, absl::Span<int64_t> x) const;

  // The container of `images` (InvalidArgument unless its shape is the
  // model's and 1 <= count <= kIdfMaxImages).
  absl::StatusOr<std::string> Compress(const IdfImages& images,
                                       IdfCodeStats* stats = nullptr) const;
  absl::StatusOr<IdfImages> Decompress(absl::string_view container) const;

 private:
  struct Layer {
    int64_t in = 0, out = 0;
    std::vector<double> w, b;  // [in, out] row-major, [out]
  };
  struct Coupling {
    std::vector<int64_t> a, b;
    std::vector<Layer> layers;
  };
  IdfCodec() = default;
  // round(MLP_k((z_a - 128) / 128)), clamped: the shifts of coupling k.
  void Shifts(const Coupling& c, absl::Span<const int64_t> v,
              std::vector<int64_t>& shift) const;

  int64_t height_ = 0, width_ = 0;
  uint32_t model_id_ = 0;
  std::vector<Coupling> couplings_;
  std::vector<FrequencyTable> tables_;  // per latent dimension
  double min_symbol_bits_ = 0.0;  // min over symbols of the rans.h bound term
};

// The IDX bytes (data/idx.h: magic 0x00000803, N x H x W) of `images`.
std::string IdxImageBytes(const IdfImages& images);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_IDF_CODEC_H_
