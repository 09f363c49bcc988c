// A fitted ICA (Infomax and IFA, float64 and float32) as a catalogue model
// file: IcaModel folds the data mean into the base, so its log p(x) is the
// fit's log p(x - mean); LoadModel alone rebuilds it bit for bit; a
// corrupted or mismatched file is a Status naming the problem.
#include "models/ica_model.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "models/calibration_model.h"
#include "models/model_file.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(),
                     a.numel() * DTypeSize(a.dtype())) == 0;
}

// Mixed Laplace sources far from the origin (mean about (3, -2, 5)), so
// folding the mean into the base is visible in every log-density.
Tensor MixedData(int64_t n, DType dtype, Rng& rng) {
  Tensor s = flows::LaplaceSources(n, 3, rng);
  Tensor m =
      Tensor::FromVector({3, 3}, {1, 0.5, 0.2, -0.3, 1, 0.4, 0.1, 0.6, 1});
  Tensor shift = Tensor::FromVector({3}, {3, -2, 5});
  return Cast(MatMulT(s, m, false, true) + shift, dtype);
}

flows::IcaResult Fit(const Tensor& x, int components) {
  flows::IcaOptions o;
  o.steps = 40;
  o.mixture_components = components;
  return flows::FitInfomaxIca(x, o).value();
}

TEST(IcaModel, FoldsTheMeanAndLoadsBitForBit) {
  for (DType dtype : {kFloat64, kFloat32}) {
    for (int k : {0, 3}) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + " K=" + std::to_string(k));
      Rng rng(7);
      Tensor x = MixedData(200, dtype, rng);
      flows::IcaResult fit = Fit(x, k);
      auto made = IcaModel(fit);
      ASSERT_TRUE(made.ok()) << made.status();
      EXPECT_EQ(made->spec.family, "ica");
      EXPECT_EQ(made->spec.dtype, dtype);
      EXPECT_EQ(made->spec.config.event, Shape{3});
      EXPECT_EQ(made->spec.config.base,
                k == 0 ? BaseChoice::kFamily : BaseChoice::kFactorizedMixture);
      NoGradScope no_grad;
      // log p(x) of the file's model = the fit's log p(x - mean), to the
      // rounding of A m; without the mean it would be far off.
      Tensor want = fit.model->LogProb(x - fit.mean);
      Tensor got = made->model->LogProb(x);
      Tensor unfolded = fit.model->LogProb(x);
      const double tol = dtype == kFloat64 ? 1e-11 : 2e-3;
      double far = 0;
      for (int64_t i = 0; i < x.dim(0); ++i) {
        EXPECT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << i;
        far = std::max(far, std::fabs(unfolded[i] - want[i]));
      }
      EXPECT_GT(far, 1.0);
      const std::string path = TmpPath("ica.ftm");
      ASSERT_TRUE(SaveModel(path, made->spec, *made->model).ok());
      auto loaded = LoadModel(path);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      EXPECT_EQ((*loaded)->base()->name(),
                k == 0 ? "logistic" : "factorized_mixture");
      EXPECT_TRUE(SameBits((*loaded)->LogProb(x), got));
      EXPECT_TRUE(ReadModelSpec(path).value() == made->spec);
    }
  }
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// What a model file holds: parameters, then buffers as "buffer/<name>".
nn::NamedTensors State(const nn::Module& m) {
  nn::NamedTensors all = m.NamedParameters();
  for (const auto& [name, t] : m.NamedBuffers())
    all.emplace_back("buffer/" + name, t);
  return all;
}

void ExpectError(const absl::Status& s, absl::StatusCode code,
                 const std::string& says) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(says), std::string::npos) << s;
}

TEST(IcaModel, CorruptedAndMismatchedFilesAreClearErrors) {
  Rng rng(3);
  Tensor x = MixedData(100, kFloat64, rng);
  SpecifiedModel infomax = IcaModel(Fit(x, 0)).value();
  SpecifiedModel ifa = IcaModel(Fit(x, 3)).value();
  const std::string path = TmpPath("infomax.ftm");
  ASSERT_TRUE(SaveModel(path, infomax.spec, *infomax.model).ok());
  const std::string bytes = ReadBytes(path);

  // One payload byte flipped: the checksum names the file.
  std::string flipped = bytes;
  flipped[flipped.size() - 5] ^= 0x40;
  const std::string bad = TmpPath("flipped.ftm");
  WriteBytes(bad, flipped);
  ExpectError(LoadModel(bad).status(), absl::StatusCode::kDataLoss,
              "'" + bad + "'");
  // Truncated.
  WriteBytes(bad, bytes.substr(0, bytes.size() / 2));
  EXPECT_FALSE(LoadModel(bad).ok());

  // The tensors of the Infomax model under the IFA description: the base's
  // tensors are missing.
  const std::string mixed = TmpPath("mismatched.ftm");
  ASSERT_TRUE(nn::WriteTensorFile(mixed, State(*infomax.model),
                                  {{"model", ModelSpecToJson(ifa.spec)}})
                  .ok());
  auto loaded = LoadModel(mixed);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("'" + mixed + "'"),
            std::string::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("base."), std::string::npos)
      << loaded.status();
  // Saving refuses a model that is not what the spec builds.
  ExpectError(SaveModel(mixed, ifa.spec, *infomax.model),
              absl::StatusCode::kInvalidArgument, "not what family 'ica'");
  // An ICA file is no calibration model file, and the reverse.
  ExpectError(LoadCalibrationModel(path).status(),
              absl::StatusCode::kInvalidArgument,
              "no model description (metadata 'calibration_model')");
}

TEST(IcaModel, RefusesAFitWithoutAModel) {
  flows::IcaResult empty;
  EXPECT_EQ(IcaModel(empty).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::models
