// Calibrated classifiers (an MLP and a simplex calibration map): the model
// computes what its parts compute; its file, loaded by LoadCalibrationModel
// alone, reproduces the probabilities bit for bit for every map and dtype;
// bad descriptions, corrupted and mismatched files are Statuses naming the
// problem.
#include "models/calibration_model.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/calibration.h"
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

CalibrationModelSpec Small(const std::string& map, DType dtype) {
  CalibrationModelSpec s;
  s.map = map;
  s.sizes = {5, 7, 4};
  s.activation = "tanh";
  s.dtype = dtype;
  return s;
}

// A model of `spec` away from its initial values (every parameter moved).
std::shared_ptr<CalibratedClassifier> Trained(const CalibrationModelSpec& spec,
                                              Rng& rng) {
  auto model = MakeCalibrationModel(spec, rng).value();
  for (Tensor p : model->Parameters())
    VisitDType(p.dtype(), [&](auto zero) {
      using T = decltype(zero);
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<T>()[i] += static_cast<T>(0.3 * rng.Normal());
    });
  return model;
}

TEST(CalibrationModel, ComputesTheClassifierThenTheMap) {
  Rng rng(2);
  auto model = Trained(Small("fcal", kFloat64), rng);
  NoGradScope no_grad;
  Tensor x = Tensor::Randn({6, 5}, rng);
  Tensor p = Softmax(model->classifier()(x), 1);
  Tensor want = model->map()->Forward(p).value;
  Tensor q = model->Probabilities(x);
  ASSERT_TRUE(SameBits(q, want));
  for (int64_t i = 0; i < 6; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < 4; ++j) sum += q[i * 4 + j];
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
  // fcal moved away from the identity: q differs from p.
  EXPECT_GT(std::fabs(q[0] - p[0]), 1e-3);
  EXPECT_TRUE(SameBits(model->LogProbabilities(x), Log(q)));
}

TEST(CalibrationModel, EveryMapLoadsBitForBit) {
  for (DType dtype : {kFloat64, kFloat32}) {
    for (const std::string map :
         {"none", "temperature", "fcal", "generalized"}) {
      SCOPED_TRACE(map + " " + DTypeName(dtype));
      Rng rng(5);
      const CalibrationModelSpec spec = Small(map, dtype);
      auto model = Trained(spec, rng);
      EXPECT_EQ(model->classifier_dtype(), dtype);
      const std::string path = TmpPath("calibrated.ftm");
      ASSERT_TRUE(SaveCalibrationModel(path, spec, *model).ok());
      auto loaded = LoadCalibrationModel(path);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      NoGradScope no_grad;
      Tensor x = Tensor::Randn({8, 5}, rng);
      EXPECT_TRUE(
          SameBits((*loaded)->LogProbabilities(x), model->LogProbabilities(x)));
      // A model built from scratch differs: the file carried the values.
      Rng other(9);
      auto fresh = MakeCalibrationModel(spec, other).value();
      EXPECT_FALSE(
          SameBits(fresh->LogProbabilities(x), model->LogProbabilities(x)));
    }
  }
}

TEST(CalibrationModel, SpecJsonRoundTripsAndRefusesBadFields) {
  const CalibrationModelSpec spec = Small("generalized", kFloat32);
  auto back = CalibrationModelSpecFromJson(CalibrationModelSpecToJson(spec));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->map, spec.map);
  EXPECT_EQ(back->sizes, spec.sizes);
  EXPECT_EQ(back->activation, spec.activation);
  EXPECT_EQ(back->dtype, spec.dtype);
  const std::string head =
      R"({"format": "flowtape.calibration_model", "version": 1, )";
  struct Case {
    std::string json, says;
  } cases[] = {
      {head + R"("map": "fcal", "sizes": [5, 4], "activation": "relu"})",
       "missing 'dtype'"},
      {head + R"("map": "platt", "sizes": [5, 4], "activation": "relu",
                  "dtype": "float64"})",
       "map: want none, temperature, fcal or generalized, got 'platt'"},
      {head + R"("map": "fcal", "sizes": [5, 1], "activation": "relu",
                  "dtype": "float64"})",
       "sizes: want K in [2, 4096] classes last, got 1"},
      {head + R"("map": "fcal", "sizes": [5, 0, 4], "activation": "relu",
                  "dtype": "float64"})",
       "sizes[1]: want an integer in [1, 65536], got 0"},
      {head + R"("map": "fcal", "sizes": [5, 4.5], "activation": "relu",
                  "dtype": "float64"})",
       "sizes[1]: want an integer, got 4.5"},
      {head + R"("map": "fcal", "sizes": [5, 4], "activation": "swish",
                  "dtype": "float64"})",
       "activation: unknown activation 'swish'"},
      {head + R"("map": "fcal", "sizes": [5, 4], "activation": "relu",
                  "dtype": "float64", "bins": 3})",
       "unknown key 'bins'"},
      {R"({"format": "flowtape.model", "version": 1, "map": "fcal",
           "sizes": [5, 4], "activation": "relu", "dtype": "float64"})",
       "format: want \"flowtape.calibration_model\""},
  };
  for (const Case& c : cases) {
    auto s = CalibrationModelSpecFromJson(c.json);
    ASSERT_FALSE(s.ok()) << c.json;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.says), std::string::npos)
        << s.status();
  }
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

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

TEST(CalibrationModel, CorruptedAndMismatchedFilesAreClearErrors) {
  Rng rng(4);
  const CalibrationModelSpec temperature = Small("temperature", kFloat64);
  auto model = Trained(temperature, rng);
  const std::string path = TmpPath("temperature.ftm");
  ASSERT_TRUE(SaveCalibrationModel(path, temperature, *model).ok());
  // One payload byte flipped: DataLoss naming the file.
  std::string bytes = ReadBytes(path);
  bytes[bytes.size() - 3] ^= 0x10;
  const std::string bad = TmpPath("corrupt.ftm");
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << bytes;
  ExpectError(LoadCalibrationModel(bad).status(), absl::StatusCode::kDataLoss,
              "'" + bad + "'");
  // A temperature map's tensors under an fcal description: c is a buffer
  // of one and a parameter of the other.
  const std::string mixed = TmpPath("mixed.ftm");
  ASSERT_TRUE(nn::WriteTensorFile(
                  mixed, State(*model),
                  {{"calibration_model",
                    CalibrationModelSpecToJson(Small("fcal", kFloat64))}})
                  .ok());
  auto loaded = LoadCalibrationModel(mixed);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("calibration model file '" + mixed),
            std::string::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("map.c"), std::string::npos)
      << loaded.status();
  // Saving checks the layout, the dtype and the sign of a.
  ExpectError(SaveCalibrationModel(mixed, Small("fcal", kFloat64), *model),
              absl::StatusCode::kInvalidArgument, "not what the spec builds");
  ExpectError(
      SaveCalibrationModel(mixed, Small("temperature", kFloat32), *model),
      absl::StatusCode::kInvalidArgument,
      "the classifier is float64 but the spec says float32");
  auto negative = std::make_shared<CalibratedClassifier>(
      nn::MLP::Create(std::vector<int64_t>{5, 7, 4}, nn::Activation::kTanh, rng)
          .value(),
      std::shared_ptr<flows::Flow>(
          manifolds::SimplexCalibration::Create(-2.0, {0, 0, 0, 0}, true)
              .value()));
  ExpectError(SaveCalibrationModel(mixed, temperature, *negative),
              absl::StatusCode::kInvalidArgument, "a = -2 is not > 0");
  // A description asking for a far larger model than the file holds.
  CalibrationModelSpec huge = temperature;
  huge.sizes = {65536, 65536, 4};
  ASSERT_TRUE(nn::WriteTensorFile(
                  mixed, State(*model),
                  {{"calibration_model", CalibrationModelSpecToJson(huge)}})
                  .ok());
  ExpectError(LoadCalibrationModel(mixed).status(),
              absl::StatusCode::kInvalidArgument, "more than 16 x");
  // Neither kind of model file passes for the other.
  ExpectError(LoadModel(path).status(), absl::StatusCode::kInvalidArgument,
              "no model description (metadata 'model')");
}

// CalibrationModelSpec::Validate holds the reader's ranges; MakeCalibration-
// Model refuses a spec built in code by its field instead of aborting in
// the MLP.
TEST(CalibrationModel, SpecValidateNamesTheField) {
  EXPECT_TRUE(CalibrationModelSpec().Validate().ok());
  struct Bad {
    void (*edit)(CalibrationModelSpec&);
    const char* says;
  };
  const Bad bad[] = {
      {[](CalibrationModelSpec& s) { s.map = "platt"; },
       "map: want none, temperature, fcal or generalized, got 'platt'"},
      {[](CalibrationModelSpec& s) { s.sizes = {10}; },
       "sizes: want 2..16 layer sizes, got 1"},
      {[](CalibrationModelSpec& s) { s.sizes = {}; },
       "sizes: want 2..16 layer sizes, got 0"},
      {[](CalibrationModelSpec& s) {
         s.sizes = {5, 0, 4};
       },
       "sizes[1]: want an integer in [1, 65536], got 0"},
      {[](CalibrationModelSpec& s) {
         s.sizes = {5, 1};
       },
       "sizes: want K in [2, 4096] classes last, got 1"},
      {[](CalibrationModelSpec& s) { s.activation = "swish"; },
       "activation: unknown activation 'swish'"},
  };
  for (const Bad& b : bad) {
    CalibrationModelSpec spec = Small("fcal", kFloat64);
    b.edit(spec);
    absl::Status s = spec.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.says;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
    Rng rng(1);
    s = MakeCalibrationModel(spec, rng).status();
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
  }
}

// A map whose Forward fails: TryProbabilities returns its error (naming the
// map) where Probabilities can only return NaN rows; with a working map the
// two agree bit for bit.
class FailingMap : public flows::Flow {
 public:
  flows::FlowResult Forward(const Tensor& x, const Tensor&,
                            Rng*) const override {
    flows::FlowResult r(Tensor::Full(x.shape(), std::nan(""), x.dtype()),
                        Tensor::Full({x.dim(0)}, std::nan(""), x.dtype()));
    r.status = absl::InvalidArgumentError("bisection did not converge");
    return r;
  }
  flows::FlowResult Inverse(const Tensor& z, const Tensor& c,
                            Rng* rng) const override {
    return Forward(z, c, rng);
  }
  std::string name() const override { return "failing_map"; }
};

TEST(CalibrationModel, TryProbabilitiesPassesTheMapsStatusOn) {
  Rng rng(4);
  auto model = Trained(Small("generalized", kFloat64), rng);
  Tensor x = Tensor::Randn({3, 5}, rng);
  NoGradScope no_grad;
  absl::StatusOr<Tensor> q = model->TryProbabilities(x);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_TRUE(SameBits(*q, model->Probabilities(x)));
  std::shared_ptr<nn::MLP> classifier =
      nn::MLP::Create({5, 7, 4}, nn::Activation::kTanh, rng).value();
  CalibratedClassifier failing(classifier, std::make_shared<FailingMap>());
  absl::StatusOr<Tensor> bad = failing.TryProbabilities(x);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "calibration map failing_map: bisection did not converge");
  Tensor nan = failing.Probabilities(x);
  for (int64_t i = 0; i < nan.numel(); ++i) EXPECT_TRUE(std::isnan(nan[i]));
  CalibratedClassifier plain(classifier, nullptr);
  EXPECT_TRUE(SameBits(*plain.TryProbabilities(x),
                       Softmax(classifier->operator()(x), 1)));
}

}  // namespace
}  // namespace flowtape::models
