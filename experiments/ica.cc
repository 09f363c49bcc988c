// ICA as a K = 1 flow: unmix synthetic "audio-like" signals.
//
//   ./bazelw run //experiments:ica
//
// Sources s (N samples x 3): a Laplace "speech" track, a 440 Hz sine and a
// 150 Hz sawtooth, mixed as x = s M' with a random M. Two fits of the linear
// flow z = A (x - mean):
//   1. Infomax (logistic base): right for super-Gaussian sources only;
//   2. a learnable factorized-mixture base (independent factor analysis),
//      which also fits the sub-Gaussian sine and sawtooth.
// Prints the Amari index of A M (0 = perfect separation) and, per source,
// the best |correlation| with a recovered component.
#include "flows/ica.h"

#include <cmath>
#include <iostream>

#include "absl/strings/str_format.h"
#include "autodiff/ops.h"

using namespace flowtape;  // NOLINT: a demo reads better without prefixes

int main() {
  const int64_t n = 4000, d = 3;
  Rng rng(1);
  Tensor laplace = flows::LaplaceSources(n, 1, rng);
  Tensor s = Tensor::Empty({n, d});
  double* ps = s.mutable_data();
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / 8000.0;  // 8 kHz sampling
    ps[i * d + 0] = laplace[i];
    ps[i * d + 1] = std::sqrt(2.0) * std::sin(2 * M_PI * 440.0 * t);
    const double phase = 150.0 * t - std::floor(150.0 * t);
    ps[i * d + 2] = std::sqrt(3.0) * (2.0 * phase - 1.0);
  }
  Tensor m = Tensor::Randn({d, d}, rng);
  Tensor x = MatMulT(s, m, false, true);

  for (int k : {0, 3}) {
    flows::IcaOptions opt;
    opt.mixture_components = k;
    opt.steps = 600;
    auto fit = flows::FitInfomaxIca(x, opt);
    if (!fit.ok()) {
      std::cerr << fit.status() << "\n";
      return 1;
    }
    const double amari = flows::AmariIndex(MatMul(fit->unmixing, m));
    std::cout << absl::StrFormat(
        "%-34s final NLL %.4f nats, Amari index %.4f\n",
        k == 0 ? "Infomax (logistic base):" : "IFA (3-component mixture base):",
        fit->nll.back(), amari);
    for (int64_t j = 0; j < d; ++j) {
      double best = 0;
      for (int64_t c = 0; c < d; ++c) {
        double sxy = 0, sxx = 0, syy = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double a = ps[i * d + j], b = fit->sources[i * d + c];
          sxy += a * b, sxx += a * a, syy += b * b;
        }
        best = std::max(best, std::fabs(sxy) / std::sqrt(sxx * syy));
      }
      const char* names[] = {"laplace", "sine", "sawtooth"};
      std::cout << absl::StrFormat("    %-9s best |corr| %.4f\n", names[j],
                                   best);
    }
  }
  return 0;
}
