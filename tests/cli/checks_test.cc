// The binaries' input checks (cli/checks.h): flag rules name every bad flag
// and its value; image sets with wrong shapes, too few images or labels
// outside [0, classes) are InvalidArgument naming the set; the memory check
// counts a model copy per data-parallel replica.
#include "cli/checks.h"

#include <cmath>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(double, max_memory_gb);

namespace flowtape::cli {
namespace {

// EXPECT_PRED2(Has, text, part): `part` occurs in `text`.
bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(CheckFlags, ListsEveryBadFlagWithItsValue) {
  EXPECT_TRUE(CheckFlags({{"steps", int64_t{5}, true, "> 0"}}).ok());
  absl::Status s = CheckFlags({
      {"steps", int64_t{-3}, false, "> 0"},
      {"batch", 64, true, "> 0"},
      {"lr", std::nan(""), false, "finite and > 0"},
  });
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string m(s.message());
  EXPECT_PRED2(Has, m, "--steps=-3: must be > 0");
  EXPECT_PRED2(Has, m, "--lr=nan: must be finite and > 0");
  EXPECT_FALSE(Has(m, "batch")) << m;
}

data::ImageSet Images(int64_t n, const Shape& image, int label) {
  data::ImageSet s;
  s.images = Tensor::Zeros(Shape{n, image[0], image[1], image[2]});
  s.labels.assign(n, label);
  return s;
}

TEST(CheckImageSet, AcceptsGoodSetsAndNamesEachDefect) {
  const Shape mnist{1, 28, 28};
  EXPECT_TRUE(CheckImageSet(Images(3, mnist, 9), "x", mnist, 10, 3).ok());
  auto message = [&](const data::ImageSet& s, int64_t min_n) {
    absl::Status st = CheckImageSet(s, "fashion train", mnist, 10, min_n);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    return std::string(st.message());
  };
  EXPECT_PRED2(Has, message(Images(3, Shape{1, 8, 8}, 0), 1),
               "fashion train: images are [3, 1, 8, 8]");
  EXPECT_PRED2(Has, message(Images(3, mnist, 0), 4),
               "3 images, need at least 4");
  EXPECT_PRED2(Has, message(Images(3, mnist, 10), 1),
               "label 10 of image 0 outside [0, 10)");
  data::ImageSet negative = Images(3, mnist, 1);
  negative.labels[2] = -1;
  EXPECT_PRED2(Has, message(negative, 1), "label -1 of image 2");
  data::ImageSet short_labels = Images(3, mnist, 1);
  short_labels.labels.pop_back();
  EXPECT_PRED2(Has, message(short_labels, 1), "2 labels for 3 images");
  data::ImageSet flat;
  flat.images = Tensor::Zeros(Shape{3, 784});
  flat.labels = {0, 1, 2};
  EXPECT_PRED2(Has, message(flat, 1), "images are [3, 784]");
}

// A finite loss and gradient pass; a non-finite loss, or a gradient whose
// entry is NaN or Inf (in either dtype), fails naming the run, the step and
// the parameter.
TEST(CheckStepFinite, NamesTheStepAndTheCause) {
  for (DType dtype : {kFloat32, kFloat64}) {
    Tensor a = Cast(Tensor::FromVector({2}, {1.0, 2.0}), dtype);
    Tensor b = Cast(Tensor::FromVector({1}, {3.0}), dtype);
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor loss = Sum(Square(a)) + Sum(b);
    Backward(loss);
    Tape::Get().Reset();
    EXPECT_TRUE(CheckStepFinite("node", 3, 5.0, {a, b}).ok());
    absl::Status s = CheckStepFinite("node", 3, NAN, {a, b});
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_PRED2(Has, std::string(s.message()),
                 "node: step 3: non-finite loss (nan)");
    EXPECT_FALSE(CheckStepFinite("node", 3, INFINITY, {a, b}).ok());
    // d/dc sum(c * x) = x: an infinite x gives an infinite gradient of c.
    Tensor c = Cast(Tensor::FromVector({2}, {1.0, 2.0}), dtype);
    c.set_requires_grad(true);
    Tensor x = Cast(Tensor::FromVector({2}, {1.0, INFINITY}), dtype);
    Backward(Sum(c * x));
    Tape::Get().Reset();
    s = CheckStepFinite("anode", 7, 1.0, {a, c});
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_PRED2(Has, std::string(s.message()),
                 "anode: step 7: non-finite gradient of parameter 1");
  }
}

// Data-parallel replicas each hold a copy of the model: a run that fits
// once may not fit on N replicas.
TEST(CheckRunMemory, CountsAModelCopyPerReplica) {
  Footprint f;
  f.parameters = 1e7;  // 4 x 8 x 1e7 bytes = 0.30 GiB per copy
  absl::SetFlag(&FLAGS_max_memory_gb, 1.0);
  EXPECT_EQ(RunReplicas(), 1);
  EXPECT_TRUE(CheckRunMemory(f, "--hidden=x").ok());
  SetRunReplicas(4);
  absl::Status s = CheckRunMemory(f, "--hidden=x");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Has, std::string(s.message()), "x 4 replicas");
  SetRunReplicas(1);
  f.replicas = 4;  // a footprint may count its replicas itself
  EXPECT_FALSE(CheckRunMemory(f, "--hidden=x").ok());
  absl::SetFlag(&FLAGS_max_memory_gb, 0.0);
}

}  // namespace
}  // namespace flowtape::cli
