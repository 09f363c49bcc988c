// NICE and RealNVP couplings (vectors and images, conditional and not)
// through the harness, plus what the harness cannot see: NICE is volume
// preserving, a fresh coupling is the identity, masks are as documented.
#include "flows/coupling.h"

#include <memory>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/masked_coupling.h"
#include "flows/permute.h"
#include "flows/scaling.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {
using testing::FlowCase;

std::shared_ptr<Flow> Nice2(Rng& r) { return Nice(2, 4, {16, 16}, r); }
std::shared_ptr<Flow> Nice5Cond(Rng& r) { return Nice(5, 3, {16}, r, 3); }
std::shared_ptr<Flow> RealNvp2(Rng& r) { return RealNvp(2, 4, {16, 16}, r); }
std::shared_ptr<Flow> RealNvp2Cond(Rng& r) {
  return RealNvp(2, 3, {16}, r, /*context_dim=*/2);
}
// Parity masks with random permutations between couplings, sigmoid scale.
std::shared_ptr<Flow> SigmoidPermuted5(Rng& r) {
  auto s = std::make_shared<Sequential>();
  for (int i = 0; i < 3; ++i) {
    s->Add(MlpCoupling(ParityMask(5, false), {12}, CouplingKind::kAffineSigmoid,
                       r, 0, nn::Activation::kTanh));
    s->Add(RandomPermutation(5, r));
  }
  return s;
}
std::shared_ptr<Flow> ImageStack(CouplingKind kind, int64_t k, Rng& r,
                                 int64_t c = 2, int64_t hw = 4) {
  auto s = std::make_shared<Sequential>();
  for (int i = 0; i < 2; ++i)
    s->Add(ConvCoupling(CheckerboardMask(c, hw, hw, i % 2), 6, kind, r, k));
  s->Add(RandomPermutation(c, r));  // channels
  for (int i = 0; i < 2; ++i)
    s->Add(ConvCoupling(ChannelMask(c, hw, hw, i % 2), 6, kind, r, k));
  return s;
}
std::shared_ptr<Flow> ImageAffineLarge(Rng& r) {
  return ImageStack(CouplingKind::kAffineTanh, 2, r, 4, 6);
}
std::shared_ptr<Flow> ImageAffine(Rng& r) {
  return ImageStack(CouplingKind::kAffineTanh, 0, r);
}
std::shared_ptr<Flow> ImageAdditiveCond(Rng& r) {
  return ImageStack(CouplingKind::kAdditive, 3, r);
}
std::shared_ptr<Flow> ImageSigmoidCond(Rng& r) {
  return ImageStack(CouplingKind::kAffineSigmoid, 2, r);
}
std::shared_ptr<Flow> ImageScaling(Rng&) {
  return std::make_shared<Scaling>(Shape({2, 3, 3}));
}

FLOWTAPE_FLOW_CASES(
    Coupling, FlowCase("nice_2d", Nice2, {2}).Perturb(0.3),
    FlowCase("nice_5d_conditional", Nice5Cond, {5}, 3).Perturb(0.3),
    FlowCase("realnvp_2d", RealNvp2, {2}).Perturb(0.1),
    FlowCase("realnvp_2d_conditional", RealNvp2Cond, {2}, 2).Perturb(0.1),
    FlowCase("sigmoid_permuted_5d", SigmoidPermuted5, {5}).Perturb(0.3),
    FlowCase("image_affine", ImageAffine, {2, 4, 4}).Batch(3),
    FlowCase("image_additive_conditional", ImageAdditiveCond, {2, 4, 4}, 3)
        .Batch(3),
    FlowCase("image_sigmoid_conditional", ImageSigmoidCond, {2, 4, 4}, 2)
        .Batch(3),
    FlowCase("image_affine_large_conditional", ImageAffineLarge, {4, 6, 6}, 2),
    FlowCase("scaling_image", ImageScaling, {2, 3, 3}).Perturb(0.5));

TEST(Coupling, NiceCouplingsAreVolumePreserving) {
  Rng rng(1);
  auto f = MlpCoupling(HalfMask(4, false), {8}, CouplingKind::kAdditive, rng);
  testing::PerturbParameters(*f, rng, 0.5);
  Tensor x = Tensor::Randn({6, 4}, rng);
  NoGradScope ng;
  FlowResult r = f->Forward(x);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r.logdet[i], 0.0);
  // The identity half passes through bit for bit; the other half moved.
  double moved = 0;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(r.value[i * 4], x[i * 4]);
    EXPECT_EQ(r.value[i * 4 + 1], x[i * 4 + 1]);
    moved += std::fabs(r.value[i * 4 + 3] - x[i * 4 + 3]);
  }
  EXPECT_GT(moved, 1e-3);
}

TEST(Coupling, FreshStacksAreTheIdentity) {
  Rng rng(2);
  Tensor x = Tensor::Randn({3, 6}, rng);
  Tensor img = Tensor::Randn({2, 2, 4, 4}, rng);
  NoGradScope ng;
  for (auto f : {RealNvp(6, 3, {8}, rng), Nice(6, 3, {8}, rng)}) {
    FlowResult r = f->Forward(x);
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(r.value[i], x[i]);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(r.logdet[i], 0.0);
  }
  FlowResult r = ImageAffine(rng)->Forward(img);
  for (int64_t i = 0; i < img.numel(); ++i) EXPECT_EQ(r.value[i], img[i]);
}

TEST(Coupling, Masks) {
  EXPECT_EQ(HalfMask(5, false), (std::vector<bool>{1, 1, 1, 0, 0}));
  EXPECT_EQ(HalfMask(5, true), (std::vector<bool>{0, 0, 0, 1, 1}));
  EXPECT_EQ(ParityMask(4, false), (std::vector<bool>{1, 0, 1, 0}));
  Tensor cb = CheckerboardMask(2, 2, 3, false);
  EXPECT_EQ(cb.ToVector(),
            (std::vector<double>{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}));
  Tensor ch = ChannelMask(2, 1, 2, true);
  EXPECT_EQ(ch.ToVector(), (std::vector<double>{0, 0, 1, 1}));
}

TEST(Coupling, ScaleIsBounded) {
  // Huge raw outputs: tanh-bounded log-scale stays within +-B, sigmoid <= 0.
  Tensor raw = Tensor::FromVector({1, 3}, {-1e6, 0.0, 1e6});
  Tensor t = LogScale(CouplingKind::kAffineTanh, raw, 3.0);
  EXPECT_NEAR(t[0], -3.0, 1e-12);
  EXPECT_EQ(t[1], 0.0);
  EXPECT_NEAR(t[2], 3.0, 1e-12);
  Tensor s = LogScale(CouplingKind::kAffineSigmoid, raw, 3.0);
  EXPECT_LE(s[2], 0.0);
  EXPECT_TRUE(std::isfinite(s[0]));
}

}  // namespace
}  // namespace flowtape::flows
