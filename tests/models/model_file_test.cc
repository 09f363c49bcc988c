// Model files: every catalogue family (vectors and images, with a context
// where the family takes one; float64, and float32 where the family runs in
// it) saved and loaded by LoadModel alone reproduces the log-probabilities
// bit for bit; the spec's JSON round-trips; every bad description is a
// Status naming the field.
#include "models/model_file.h"

#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/autoregressive.h"
#include "flows/distribution.h"
#include "flows/permute.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

ModelSpec Small(const ZooEntry& e, DType dtype) {
  ModelSpec s;
  s.family = e.name;
  s.dtype = dtype;
  s.config.layers = 2;
  s.config.hidden = {8, 6};
  s.config.channels = 4;
  s.config.levels = 1;
  s.config.depth = 2;
  s.config.bins = 5;
  s.config.context_dim = e.takes_context ? 2 : 0;
  s.config.event = e.domain == Domain::kVectors ? Shape{3} : Shape{1, 4, 4};
  return s;
}

// Bitwise equality of two tensors' values (same dtype).
bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(),
                     a.numel() * DTypeSize(a.dtype())) == 0;
}

// The families whose float32 pass runs today (the others still combine
// float64 constants with float32 values, which aborts); float64 covers
// every family.
bool ComputesInFloat32(const ZooEntry& e) {
  return (e.name == "realnvp" && e.domain == Domain::kVectors) ||
         e.name == "radial";
}

TEST(ModelFile, EveryFamilyReproducesItsLogProbsBitForBit) {
  for (const ZooEntry& e : ZooEntries())
    for (DType dtype : {kFloat64, kFloat32}) {
      if (dtype == kFloat32 && !ComputesInFloat32(e)) continue;
      SCOPED_TRACE(e.name + (e.domain == Domain::kImages ? " (images) " : " ") +
                   DTypeName(dtype));
      const ModelSpec spec = Small(e, dtype);
      Rng rng(11);
      auto made = MakeModel(spec.family, spec.config, rng);
      ASSERT_TRUE(made.ok()) << made.status();
      flows::FlowModel& model = **made;
      model.To(dtype);
      // Random parameters, so no layer is the identity.
      for (Tensor p : model.Parameters())
        VisitDType(dtype, [&](auto zero) {
          using T = decltype(zero);
          for (int64_t i = 0; i < p.numel(); ++i)
            p.mutable_data<T>()[i] += static_cast<T>(0.2 * rng.Normal());
        });
      std::vector<int64_t> dims = {4};
      for (int64_t d : spec.config.event.dims()) dims.push_back(d);
      Tensor x = Tensor::Randn(Shape(dims), rng, dtype);
      Tensor c = spec.config.context_dim > 0
                     ? Tensor::Randn({4, spec.config.context_dim}, rng, dtype)
                     : Tensor();
      NoGradScope no_grad;
      Rng r1(3), r2(3);
      // Data-dependent initialisation (ActNorm's "initialized" flag too).
      ASSERT_TRUE(model.InitializeFromData(x, c, &r1).ok());
      Rng r3(3);
      const Tensor want = model.LogProb(x, c, &r3);
      const std::string path = TmpPath("model.ftm");
      absl::Status s = SaveModel(path, spec, model);
      ASSERT_TRUE(s.ok()) << s;
      auto loaded = LoadModel(path);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      EXPECT_EQ((*loaded)->dtype(), dtype);
      EXPECT_EQ((*loaded)->name(), model.name());
      const Tensor got = (*loaded)->LogProb(x, c, &r2);
      for (int64_t i = 0; i < 4; ++i) ASSERT_TRUE(std::isfinite(want[i]));
      EXPECT_TRUE(SameBits(got, want))
          << got.ToVector()[0] << " vs " << want.ToVector()[0];
      auto read = ReadModelSpec(path);
      ASSERT_TRUE(read.ok());
      EXPECT_TRUE(*read == spec);
    }
}

// The autoregressive families once stacked their steps with reversals
// between (A_0, R, A_1, R, ..., steps named 0, 2, 4, ...). Such a stack, with
// random weights, saved as a model file loads into the folded stack (no
// permutation layer; odd steps with the reversed ordering) with the same
// log-probabilities; an even number of steps ends in a reversal, which the
// iid base does not see.
TEST(ModelFile, StacksWithReversalsLoadIntoTheFoldedStack) {
  for (const std::string family : {"maf", "iaf", "nsf_ar"})
    for (int layers : {2, 3})
      for (int64_t context : {0, 2}) {
        SCOPED_TRACE(family + " layers " + std::to_string(layers) +
                     " context " + std::to_string(context));
        ModelSpec spec;
        spec.family = family;
        spec.config.event = Shape{5};
        spec.config.layers = layers;
        spec.config.hidden = {9, 7};
        spec.config.bins = 4;
        spec.config.context_dim = context;
        flows::AutoregressiveOptions o;
        o.made.dim = 5;
        o.made.hidden = spec.config.hidden;
        o.made.context_dim = context;
        o.transform.kind = family == "nsf_ar"
                               ? flows::ElementwiseKind::kSpline
                               : flows::ElementwiseKind::kAffineMaf;
        o.transform.spline.bins = spec.config.bins;
        o.transform.spline.bound = spec.config.bound;
        o.inverted = family == "iaf";
        Rng rng(layers + context);
        auto steps = std::make_shared<flows::Sequential>();
        for (int i = 0; i < layers; ++i) {
          if (i > 0) steps->Add(flows::Reverse(5).value());
          steps->Add(flows::Autoregressive::Create(o, rng).value());
        }
        flows::FlowModel old(flows::StandardNormal::Create(Shape{5}).value(),
                             steps);
        for (auto& [name, p] : old.NamedParameters()) {
          double* v = p.mutable_data<double>();
          for (int64_t i = 0; i < p.numel(); ++i) v[i] = 0.2 * rng.Normal();
        }
        const std::string path = TmpPath("reversals.model");
        ASSERT_TRUE(nn::SaveCheckpoint(path, old, nullptr,
                                       {{"model", ModelSpecToJson(spec)}})
                        .ok());
        auto loaded = LoadModel(path);
        ASSERT_TRUE(loaded.ok()) << loaded.status();
        const auto& folded =
            dynamic_cast<const flows::Sequential&>(*(*loaded)->flow());
        ASSERT_EQ(folded.size(), static_cast<size_t>(layers));
        // A fresh model has the same structure: no permutation, odd steps
        // with the reversed ordering.
        Rng fresh_rng(1);
        auto fresh = MakeModel(family, spec.config, fresh_rng).value();
        const auto& fresh_steps =
            dynamic_cast<const flows::Sequential&>(*fresh->flow());
        for (const auto* stack : {&folded, &fresh_steps})
          for (size_t i = 0; i < stack->size(); ++i) {
            const auto& step =
                dynamic_cast<const flows::Autoregressive&>(*stack->step(i));
            const std::vector<int64_t> natural = {1, 2, 3, 4, 5},
                                       reversed = {5, 4, 3, 2, 1};
            EXPECT_EQ(step.made().order(), i % 2 == 1 ? reversed : natural);
          }
        Tensor x = Tensor::Randn({16, 5}, rng);
        Tensor c = context > 0 ? Tensor::Randn({16, context}, rng) : Tensor();
        NoGradScope no_grad;
        const Tensor want = old.LogProb(x, c), got = (*loaded)->LogProb(x, c);
        for (int64_t n = 0; n < 16; ++n)
          EXPECT_NEAR(got[n], want[n], 1e-12 * (1 + std::fabs(want[n]))) << n;
      }
}

TEST(ModelSpec, JsonRoundTripsAndDefaultsMissingConfigFields) {
  ModelSpec s;
  s.family = "nsf_ar";
  s.dtype = kFloat32;
  s.config.event = Shape{2, 8, 8};
  s.config.layers = 3;
  s.config.hidden = {5, 7, 9};
  s.config.context_dim = 4;
  s.config.levels = 3;
  s.config.depth = 6;
  s.config.channels = 12;
  s.config.bins = 11;
  s.config.bound = 0.1;  // not a binary fraction
  s.config.train_t = true;
  s.config.components = 5;
  s.config.base = BaseChoice::kGaussianMixture;
  auto back = ModelSpecFromJson(ModelSpecToJson(s));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == s) << ModelSpecToJson(s);
  for (BaseChoice b :
       {BaseChoice::kGaussianMixtureFull, BaseChoice::kFactorizedMixture,
        BaseChoice::kResampled}) {
    s.config.base = b;
    back = ModelSpecFromJson(ModelSpecToJson(s));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == s) << ModelSpecToJson(s);
  }
  auto defaults = ModelSpecFromJson(
      R"({"format": "flowtape.model", "version": 1, "family": "maf",
          "dtype": "float64", "config": {}})");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  ModelSpec want;
  want.family = "maf";
  EXPECT_TRUE(*defaults == want);
  // Defaults of the newer fields are not written (older readers read them).
  EXPECT_EQ(ModelSpecToJson(want).find("components"), std::string::npos);
  EXPECT_EQ(ModelSpecToJson(want).find("base"), std::string::npos);
}

// A Gaussian-mixture base (diagonal or full covariances) or a resampled
// base (its acceptance network and normaliser samples) under a flow (and
// gf's kernel count) survive a model file: the loaded model has the base and
// reproduces log p bit for bit.
TEST(ModelFile, GaussianMixtureBaseLoadsBitForBit) {
  for (const auto& [family, base, base_name] :
       std::vector<std::tuple<std::string, BaseChoice, std::string>>{
           {"maf", BaseChoice::kGaussianMixture, "gaussian_mixture"},
           {"gf", BaseChoice::kGaussianMixture, "gaussian_mixture"},
           {"realnvp", BaseChoice::kGaussianMixture, "gaussian_mixture"},
           {"maf", BaseChoice::kGaussianMixtureFull, "full_gaussian_mixture"},
           {"realnvp", BaseChoice::kGaussianMixtureFull,
            "full_gaussian_mixture"},
           {"realnvp", BaseChoice::kResampled, "resampled_normal"},
           {"maf", BaseChoice::kResampled, "resampled_normal"}}) {
    SCOPED_TRACE(family + " " + base_name);
    ModelSpec spec;
    spec.family = family;
    spec.config.layers = 2;
    spec.config.hidden = {8};
    spec.config.components = 3;
    spec.config.base = base;
    Rng rng(4);
    auto model = MakeModel(family, spec.config, rng).value();
    ASSERT_EQ(model->base()->name(), base_name);
    for (Tensor p : model->Parameters())
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<double>()[i] += 0.2 * rng.Normal();
    const std::string path = TmpPath("gmm.ftm");
    ASSERT_TRUE(SaveModel(path, spec, *model).ok());
    auto loaded = LoadModel(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->base()->name(), base_name);
    NoGradScope no_grad;
    Tensor x = Tensor::Randn({5, 2}, rng);
    EXPECT_TRUE(SameBits((*loaded)->LogProb(x), model->LogProb(x)));
    // Saved under the default base, the mixture's tensors are unknown.
    ModelSpec plain = spec;
    plain.config.base = BaseChoice::kFamily;
    EXPECT_FALSE(SaveModel(path, plain, *model).ok());
    // Nor does another base's layout match.
    plain.config.base = base == BaseChoice::kGaussianMixture
                            ? BaseChoice::kGaussianMixtureFull
                            : BaseChoice::kGaussianMixture;
    EXPECT_FALSE(SaveModel(path, plain, *model).ok());
  }
}

// A file of a small realnvp (2 layers) whose description is `json`.
std::string FileWithDescription(const std::string& json) {
  Rng rng(1);
  ModelConfig c;
  c.layers = 2;
  c.hidden = {8};
  auto model = MakeModel("realnvp", c, rng).value();
  nn::NamedTensors all = model->NamedParameters();
  for (const auto& [name, t] : model->NamedBuffers())
    all.emplace_back("buffer/" + name, t);
  const std::string path = TmpPath("described.ftm");
  EXPECT_TRUE(nn::WriteTensorFile(path, all, {{"model", json}}).ok());
  return path;
}

std::string Spec(const std::string& config,
                 const std::string& family = R"("realnvp")",
                 const std::string& dtype = R"("float64")") {
  return R"({"format": "flowtape.model", "version": 1, "family": )" + family +
         R"(, "dtype": )" + dtype + R"(, "config": )" + config + "}";
}

void ExpectRefused(const std::string& json, const std::string& needle) {
  const std::string path = FileWithDescription(json);
  auto model = LoadModel(path);
  ASSERT_FALSE(model.ok()) << json;
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find(needle), std::string::npos)
      << model.status();
  EXPECT_NE(model.status().message().find("model file '" + path + "'"),
            std::string::npos)
      << model.status();
}

TEST(ModelFile, TheDescriptionLoadsWhenValid) {
  auto model = LoadModel(FileWithDescription(
      Spec(R"({"layers": 2, "hidden": [8], "event": [2]})")));
  ASSERT_TRUE(model.ok()) << model.status();
}

TEST(ModelFile, BadDescriptionsNameTheField) {
  const std::string ok = R"({"layers": 2, "hidden": [8]})";
  ExpectRefused("{", "model description: not valid JSON");
  ExpectRefused("[1]", "(top level): want an object");
  ExpectRefused(Spec(ok, R"("realnvq")"),
                "family: unknown family \"realnvq\"; the catalogue has");
  ExpectRefused(Spec(ok, "7"), "family: want a string, got 7");
  ExpectRefused(Spec(ok, R"("realnvp")", R"("float16")"),
                "dtype: want \"float32\" or \"float64\", got \"float16\"");
  ExpectRefused(Spec(R"({"layers": 0, "hidden": [8]})"),
                "config.layers: want an integer in [1, 4096], got 0");
  ExpectRefused(Spec(R"({"layers": 2.5, "hidden": [8]})"),
                "config.layers: want an integer in [1, 4096], got 2.5");
  ExpectRefused(Spec(R"({"layers": 18446744073709551615})"),
                "config.layers: want an integer in [1, 4096]");
  ExpectRefused(Spec(R"({"layers": 2, "hidden": [8, 0]})"),
                "config.hidden[1]: want an integer in [1, 65536], got 0");
  ExpectRefused(Spec(R"({"layers": 2, "hidden": []})"),
                "config.hidden: want an array of 1..16 integers, got []");
  ExpectRefused(Spec(R"({"layers": 2, "hidden": [8], "event": [1, 2]})"),
                "config.event: want [D] or [C, H, W], got [1,2]");
  ExpectRefused(Spec(R"({"layers": 2, "bound": -1})"),
                "config.bound: want a number in (0, 1e6], got -1");
  ExpectRefused(Spec(R"({"layers": 2, "train_t": "yes"})"),
                "config.train_t: want true or false, got \"yes\"");
  ExpectRefused(Spec(R"({"layers": 2, "base": "mixture"})"),
                "config.base: want \"family\", \"gmm\", \"gmm_full\", "
                "\"factorized\" or \"resampled\", got \"mixture\"");
  ExpectRefused(Spec(R"({"layers": 2, "components": 0})"),
                "config.components: want an integer in [1, 4096], got 0");
  ExpectRefused(Spec(R"({"layers": 2, "hidden": [8], "widht": 3})"),
                "config.widht: unknown field");
  ExpectRefused(Spec(R"({"layers": 2, "layers": 3})"),
                "duplicate key \"layers\"");
  ExpectRefused(Spec(R"({"layers": 1e999})"), "not valid JSON");
  ExpectRefused(R"({"format": "flowtape.model", "version": 1, "config": {}})",
                "family: missing");
  ExpectRefused(
      R"({"format": "flowtape.model", "version": 2, "family": "maf",
          "dtype": "float64", "config": {}})",
      "version: want 1");
  // A description of a huge model is refused before anything is built.
  ExpectRefused(Spec(R"({"layers": 2, "hidden": [65536, 65536]})"),
                "config: describes a model of about");
  // Full-covariance factors count: 16 x 4096 x 4095 / 2 lower entries.
  ExpectRefused(Spec(R"({"layers": 2, "hidden": [8], "event": [4096],
                         "components": 16, "base": "gmm_full"})"),
                "config: describes a model of about");
  // Valid descriptions that disagree with the family or the tensors.
  ExpectRefused(Spec(R"({"layers": 2, "hidden": [8]})", R"("glow")"),
                "flow 'glow' does not take vector data");
  ExpectRefused(Spec(R"({"layers": 3, "hidden": [8]})"),
                "missing 'flow.2.conditioner.layer0.weight'");
  ExpectRefused(
      Spec(R"({"layers": 2, "hidden": [9]})"),
      "'flow.0.conditioner.layer0.weight' has shape [1, 8] in the file but "
      "[1, 9] in the module");
}

TEST(ModelFile, PlainCheckpointsAndMismatchedSpecsAreRefused) {
  Rng rng(1);
  ModelSpec spec;
  spec.family = "maf";
  spec.config.layers = 2;
  spec.config.hidden = {8};
  auto model = MakeModel(spec.family, spec.config, rng).value();
  const std::string path = TmpPath("plain.ckpt");
  ASSERT_TRUE(nn::SaveCheckpoint(path, *model).ok());
  auto loaded = LoadModel(path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("no model description"),
            std::string::npos)
      << loaded.status();
  ModelSpec other = spec;
  other.config.hidden = {9};
  absl::Status s = SaveModel(TmpPath("x.ftm"), other, *model);
  EXPECT_NE(s.message().find("not what family 'maf' builds"), std::string::npos)
      << s;
  other = spec;
  other.dtype = kFloat32;
  s = SaveModel(TmpPath("x.ftm"), other, *model);
  EXPECT_NE(s.message().find("the model is float64 but the spec says float32"),
            std::string::npos)
      << s;
  EXPECT_EQ(LoadModel(TmpPath("missing.ftm")).status().code(),
            absl::StatusCode::kNotFound);
}

// ModelSpec::Validate checks a spec built in code with the reader's ranges
// and words; SaveModel refuses such a spec by its field before anything is
// built, and every catalogue spec the tests use passes.
TEST(ModelSpec, ValidateNamesTheFieldOutOfRange) {
  for (const ZooEntry& e : ZooEntries())
    EXPECT_TRUE(Small(e, kFloat64).Validate().ok()) << e.name;
  EXPECT_TRUE((ModelSpec{"maf", {}, kFloat32}.Validate().ok()));
  struct Bad {
    void (*edit)(ModelSpec&);
    const char* says;
  };
  const Bad bad[] = {
      {[](ModelSpec& s) { s.family = "nope"; },
       "family: unknown family \"nope\"; the catalogue has"},
      {[](ModelSpec& s) {
         s.config.event = Shape{2, 3};
       },
       "config.event: want [D] or [C, H, W], got [2, 3]"},
      {[](ModelSpec& s) { s.config.event = Shape{0}; },
       "config.event[0]: want an integer in [1, 65536], got 0"},
      {[](ModelSpec& s) {
         s.config.event = Shape{4096, 4096, 2};
       },
       "config.event: want at most 2^24 values"},
      {[](ModelSpec& s) { s.config.layers = 0; },
       "config.layers: want an integer in [1, 4096], got 0"},
      {[](ModelSpec& s) { s.config.hidden = {}; },
       "config.hidden: want an array of 1..16 integers, got 0 sizes"},
      {[](ModelSpec& s) {
         s.config.hidden = {8, 0};
       },
       "config.hidden[1]: want an integer in [1, 65536], got 0"},
      {[](ModelSpec& s) { s.config.context_dim = -1; },
       "config.context_dim: want an integer in [0, 65536], got -1"},
      {[](ModelSpec& s) { s.config.levels = 9; }, "config.levels"},
      {[](ModelSpec& s) { s.config.depth = 0; }, "config.depth"},
      {[](ModelSpec& s) { s.config.channels = 16385; }, "config.channels"},
      {[](ModelSpec& s) { s.config.bins = 0; }, "config.bins"},
      {[](ModelSpec& s) { s.config.components = 4097; }, "config.components"},
      {[](ModelSpec& s) { s.config.bound = std::nan(""); },
       "config.bound: want a number in (0, 1e6], got nan"},
      {[](ModelSpec& s) { s.config.bound = 0; }, "config.bound"},
  };
  Rng rng(1);
  ModelSpec good;
  good.family = "maf";
  good.config.layers = 2;
  good.config.hidden = {8};
  auto model = MakeModel(good.family, good.config, rng).value();
  for (const Bad& b : bad) {
    ModelSpec spec = good;
    b.edit(spec);
    absl::Status s = spec.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.says;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
    s = SaveModel(TmpPath("bad_spec.ftm"), spec, *model);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.says;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace flowtape::models
