// Couplings and autoregressive flows on the monotone elementwise maps (deep
// sigmoidal, sum-of-squares polynomial, Bernstein polynomial, UMNN) through
// the flow harness: round trips, log-dets against brute-force Jacobians,
// forward against inverse, normalisation (also of p(x | c) for the 2-D
// conditional cases), float32 against float64, first and second derivatives
// against finite differences, and that the context changes both directions.
// The maps themselves: monotone_test.
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "flows/autoregressive.h"
#include "flows/coupling.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {

using testing::FlowCase;
using K = ElementwiseKind;

// SOS options: linear tails beyond +-scale (the default) or the bare
// polynomial. A tailed map whose end slope g(+-B) is small has a density with
// heavy (Gaussian in a slowly growing u) tails, far outside any quadrature
// grid; the bare polynomial's grow like exp(-v^(2(2L+1))), so the 2-D cases
// whose density is integrated use it, and the tails run through every other
// check in 3-D cases with a small scale (most inputs beyond +-B).
struct SosTails {
  bool linear = true;
  double scale = 4.0;
};
constexpr SosTails kBareSos{false, 4.0};

ElementwiseOptions Transform(K kind, SosTails sos = {}) {
  ElementwiseOptions t(kind);
  t.sos.linear_tails = sos.linear;
  t.sos.scale = sos.scale;
  t.dsf.units = 4;
  t.sos.polynomials = 2;
  t.sos.degree = 2;
  t.bernstein.degree = 6;
  t.bernstein.bound = 3.0;
  t.umnn.units = 3;
  return t;
}

// Two couplings with alternating halves.
testing::FlowFactory Couplings(K kind, int64_t d, int64_t context = 0,
                               SosTails sos = {}) {
  return [=](Rng& r) -> std::shared_ptr<Flow> {
    CouplingOptions o;
    o.event = Shape{d};
    o.hidden = {8};
    o.context_dim = context;
    o.activation = nn::Activation::kTanh;
    o.transform = Transform(kind, sos);
    auto s = std::make_shared<Sequential>();
    for (int i = 0; i < 2; ++i) {
      o.flip = i % 2 == 1;
      s->Add(Coupling::Create(o, r).value());
    }
    return s;
  };
}

testing::FlowFactory Ar(K kind, int64_t d, int64_t context, bool inverted,
                        SosTails sos = {}) {
  return [=](Rng& r) -> std::shared_ptr<Flow> {
    AutoregressiveOptions o;
    o.made.dim = d;
    o.made.hidden = {8, 8};
    o.made.context_dim = context;
    o.made.activation = nn::Activation::kTanh;
    o.transform = Transform(kind, sos);
    o.inverted = inverted;
    return Autoregressive::Create(o, r).value();
  };
}

FLOWTAPE_FLOW_CASES(
    Monotone,
    FlowCase("dsf_coupling_2d", Couplings(K::kDsf, 2), {2}).Perturb(0.3),
    FlowCase("dsf_maf_2d", Ar(K::kDsf, 2, 0, false), {2}).Perturb(0.3),
    FlowCase("dsf_iaf_3d_cond", Ar(K::kDsf, 3, 2, true), {3}, 2).Perturb(0.3),
    FlowCase("sos_coupling_2d", Couplings(K::kSos, 2, 0, kBareSos), {2})
        .Perturb(0.3)
        .Quadrature(12, 600),
    FlowCase("sos_maf_2d", Ar(K::kSos, 2, 0, false, kBareSos), {2})
        .Perturb(0.3)
        .Quadrature(12, 600),
    FlowCase("sos_iaf_3d_cond", Ar(K::kSos, 3, 2, true), {3}, 2).Perturb(0.3),
    FlowCase("sos_tails_iaf_3d_cond", Ar(K::kSos, 3, 2, true, {true, 0.5}), {3},
             2)
        .Perturb(0.3),
    FlowCase("sos_tails_coupling_3d", Couplings(K::kSos, 3, 0, {true, 0.5}),
             {3})
        .Perturb(0.3),
    FlowCase("sos_tails_maf_3d", Ar(K::kSos, 3, 0, false, {true, 0.5}), {3})
        .Perturb(0.3),
    FlowCase("bernstein_coupling_2d", Couplings(K::kBernstein, 2), {2})
        .Perturb(0.3),
    FlowCase("bernstein_maf_2d", Ar(K::kBernstein, 2, 0, false), {2})
        .Perturb(0.3),
    FlowCase("bernstein_iaf_3d_cond", Ar(K::kBernstein, 3, 2, true), {3}, 2)
        .Perturb(0.3),
    FlowCase("umnn_coupling_2d", Couplings(K::kUmnn, 2), {2}).Perturb(0.2),
    FlowCase("umnn_maf_2d", Ar(K::kUmnn, 2, 0, false), {2}).Perturb(0.3),
    FlowCase("umnn_iaf_3d_cond", Ar(K::kUmnn, 3, 2, true), {3}, 2).Perturb(0.3),
    // Conditional in 2-D: p(x | c) integrates to 1 for a fixed context, and
    // the context reaches both directions of couplings and MAFs. The DSF and
    // UMNN couplings put ~2e-4 of their mass outside [-8, 8]^2 at the
    // harness's context: their grids reach 12.
    FlowCase("dsf_coupling_2d_cond", Couplings(K::kDsf, 2, 2), {2}, 2)
        .Perturb(0.3)
        .Quadrature(12, 400),
    FlowCase("dsf_maf_2d_cond", Ar(K::kDsf, 2, 2, false), {2}, 2).Perturb(0.3),
    FlowCase("sos_coupling_2d_cond", Couplings(K::kSos, 2, 2, kBareSos), {2}, 2)
        .Perturb(0.3)
        .Quadrature(12, 600),
    FlowCase("sos_maf_2d_cond", Ar(K::kSos, 2, 2, false, kBareSos), {2}, 2)
        .Perturb(0.3)
        .Quadrature(12, 600),
    FlowCase("bernstein_coupling_2d_cond", Couplings(K::kBernstein, 2, 2), {2},
             2)
        .Perturb(0.3),
    FlowCase("bernstein_maf_2d_cond", Ar(K::kBernstein, 2, 2, false), {2}, 2)
        .Perturb(0.3),
    // Adam at lr 1 leaves the UMNN conditional cases with a model whose
    // samples are not all finite (loss finite throughout): lr 0.3.
    FlowCase("umnn_coupling_2d_cond", Couplings(K::kUmnn, 2, 2), {2}, 2)
        .TrainLr(0.3)
        .Perturb(0.2)
        .Quadrature(12, 400),
    FlowCase("umnn_maf_2d_cond", Ar(K::kUmnn, 2, 2, false), {2}, 2)
        .TrainLr(0.3)
        .Perturb(0.3));

// A failed numeric inverse reaches FlowResult::status through couplings
// and through every pass of the autoregressive inverse, with NaN values.
TEST(MonotoneFlows, FailedInverseIsReportedByTheFlow) {
  for (K kind : {K::kDsf, K::kSos, K::kBernstein, K::kUmnn}) {
    Rng rng(3);
    std::shared_ptr<Flow> coupling = Couplings(kind, 3)(rng);
    std::shared_ptr<Flow> maf = Ar(kind, 3, 0, false)(rng);
    std::shared_ptr<Flow> iaf = Ar(kind, 3, 0, true)(rng);
    Tensor z = Tensor::Randn({2, 3}, rng);
    z.mutable_data<double>()[5] = std::nan("");  // sample 1, last entry
    for (const auto& [flow, inverse] :
         {std::pair{coupling, true}, {maf, true}, {iaf, false}}) {
      FlowResult r = inverse ? flow->Inverse(z) : flow->Forward(z);
      EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument)
          << flow->name() << ": " << r.status;
      EXPECT_TRUE(std::isnan(r.logdet[1])) << flow->name();
      EXPECT_TRUE(std::isfinite(r.logdet[0])) << flow->name();
    }
  }
}

}  // namespace
}  // namespace flowtape::flows
