// Sphere model files: every kind of benchmarks/earth's models, in float64 and
// float32, with trained-looking (perturbed) parameters, saved and loaded by
// LoadSphereModel alone gives the same log-densities bit for bit; bad
// descriptions and models that are not what the spec builds are refused
// with errors naming the problem.
#include "models/sphere_model.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

TEST(SphereModel, RoundTripGivesTheSameLogDensities) {
  for (const char* kind :
       {"affine", "mixture", "neural", "recursive", "recursive_mobius",
        "recursive_mixture", "rfm", "rfm_fourier"}) {
    for (DType dtype : {kFloat64, kFloat32}) {
      SCOPED_TRACE(std::string(kind) + " " + DTypeName(dtype));
      SphereModelSpec spec;
      spec.kind = std::string(kind) == "rfm_fourier" ? "rfm" : kind;
      spec.layers = 3;
      spec.components = 4;
      spec.blocks = 1;
      spec.hidden = 8;
      spec.field.width = 8;
      spec.field.depth = 2;
      spec.field.step_size = 0.25;
      if (std::string(kind) == "rfm_fourier") {
        spec.field.fourier = 5;
        spec.field.fourier_scale = 3.0;
      }
      spec.dtype = dtype;
      SphereModelInit init;
      init.mean_direction = Eigen::Vector3d(0.6, 0.0, 0.8);
      init.random_point = [](Rng& r) {
        return Eigen::Vector3d(r.Normal(), r.Normal(), r.Normal()).normalized();
      };
      Rng rng(5);
      auto model = MakeSphereModel(spec, init, rng);
      ASSERT_TRUE(model.ok()) << model.status();
      ASSERT_EQ((*model)->dtype(), dtype);
      for (Tensor p : (*model)->Parameters())  // away from the identity
        VisitDType(dtype, [&](auto zero) {
          using T = decltype(zero);
          for (int64_t j = 0; j < p.numel(); ++j)
            p.mutable_data<T>()[j] += static_cast<T>(0.2 * rng.Normal());
        });
      const std::string path = TmpPath(std::string(kind) + ".ftm");
      absl::Status saved = SaveSphereModel(path, spec, **model);
      ASSERT_TRUE(saved.ok()) << saved;
      auto loaded = LoadSphereModel(path);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      ASSERT_EQ((*loaded)->dtype(), dtype);
      Tensor x =
          Cast(manifolds::Manifold::Sphere(3).SampleUniform(50, rng), dtype);
      TapeScope scope;
      NoGradScope no_grad;
      Tensor want = (*model)->LogProb(x), got = (*loaded)->LogProb(x);
      for (int64_t i = 0; i < 50; ++i) {
        ASSERT_TRUE(std::isfinite(want[i]));
        ASSERT_EQ(got[i], want[i]) << "point " << i;
      }
    }
  }
}

// The first affine layer is centred on the mean direction: one off the
// sphere (or NaN, the mean of an empty set) is a Status, not an abort.
TEST(SphereModel, ACentreOffTheSphereIsAStatus) {
  for (const char* kind : {"affine", "mixture", "neural"}) {
    for (const Eigen::Vector3d& centre :
         {Eigen::Vector3d(0, 0, 2), Eigen::Vector3d(0, 0, 0),
          Eigen::Vector3d(NAN, 0, 1)}) {
      SphereModelSpec spec;
      spec.kind = kind;
      spec.layers = 2;
      spec.components = 2;
      spec.blocks = 1;
      spec.hidden = 4;
      SphereModelInit init;
      init.mean_direction = centre;
      Rng rng(1);
      auto model = MakeSphereModel(spec, init, rng);
      EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument)
          << kind;
      EXPECT_NE(model.status().message().find("must be a unit vector"),
                std::string::npos)
          << model.status();
    }
  }
}

TEST(SphereModel, RefusesBadDescriptionsAndMismatchedModels) {
  EXPECT_EQ(SphereModelSpecToJson({}),
            SphereModelSpecToJson(
                *SphereModelSpecFromJson(SphereModelSpecToJson({}))));
  const std::string good = SphereModelSpecToJson({});
  auto refused = [](const std::string& json, const std::string& says) {
    auto s = SphereModelSpecFromJson(json);
    ASSERT_FALSE(s.ok()) << json;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(says), std::string::npos) << s.status();
  };
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string j = good;
    const size_t at = j.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return j.replace(at, from.size(), to);
  };
  refused(edit("\"kind\":\"affine\"", "\"kind\":\"cube\""), "kind");
  refused(edit("\"layers\":12", "\"layers\":0"), "layers");
  refused(edit("\"hidden\":32", "\"hidden\":1e9"), "hidden");
  refused(edit("\"bins\":8", "\"bins\":0"), "bins");
  refused(edit("\"blocks\":2", "\"blocks\":2,\"extra\":1"), "unknown key");
  refused(edit("\"dtype\":\"float64\"", "\"dtype\":\"int8\""), "dtype");
  refused(edit("\"version\":1", "\"version\":2"), "version");
  refused("[]", "object");
  // "field": only and always with kind rfm, strict inside.
  refused(edit("\"blocks\":2", "\"blocks\":2,\"field\":{}"), "only kind rfm");
  SphereModelSpec rfm;
  rfm.kind = "rfm";
  const std::string rfm_json = SphereModelSpecToJson(rfm);
  EXPECT_TRUE(SphereModelSpecFromJson(rfm_json).ok());
  auto rfm_edit = [&](const std::string& from, const std::string& to) {
    std::string j = rfm_json;
    const size_t at = j.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return j.replace(at, from.size(), to);
  };
  // Keys are written in order, "field":{...} then ",\"format\"".
  const size_t field_at = rfm_json.find("\"field\":");
  const std::string field =
      rfm_json.substr(field_at, rfm_json.find('}', field_at) + 2 - field_at);
  refused(rfm_edit(field, ""), "missing 'field'");
  refused(rfm_edit("\"activation\":\"tanh\"", "\"activation\":\"cube\""),
          "activation");
  refused(rfm_edit("\"width\":128", "\"width\":0"), "width");
  refused(rfm_edit("\"depth\":3", "\"depth\":17"), "depth");
  refused(rfm_edit("\"step_size\":0.01", "\"step_size\":0"), "step_size");
  refused(rfm_edit("\"fourier\":0", "\"fourier\":-1"), "fourier");
  refused(rfm_edit("\"fourier_scale\":1.0", "\"fourier_scale\":0"),
          "fourier_scale");
  refused(rfm_edit("\"step_size\":0.01", "\"step_size\":0.01,\"x\":1"),
          "field: unknown key");
  // A model that is not what the spec builds; a plain checkpoint.
  SphereModelSpec spec;
  spec.layers = 2;
  Rng rng(1);
  auto model = *MakeSphereModel(spec, {}, rng);
  SphereModelSpec other = spec;
  other.layers = 3;
  EXPECT_FALSE(SaveSphereModel(TmpPath("x.ftm"), other, *model).ok());
  other = spec;
  other.dtype = kFloat32;
  EXPECT_FALSE(SaveSphereModel(TmpPath("x.ftm"), other, *model).ok());
  ASSERT_TRUE(nn::SaveCheckpoint(TmpPath("plain.ckpt"), *model).ok());
  auto plain = LoadSphereModel(TmpPath("plain.ckpt"));
  ASSERT_FALSE(plain.ok());
  EXPECT_NE(plain.status().message().find("no model description"),
            std::string::npos);
  // A description asking for a far larger model than the file holds.
  ASSERT_TRUE(SaveSphereModel(TmpPath("small.ftm"), spec, *model).ok());
  nn::Metadata meta;
  auto tensors = nn::ReadTensorFile(TmpPath("small.ftm"), &meta);
  ASSERT_TRUE(tensors.ok());
  SphereModelSpec huge = spec;
  huge.kind = "mixture";
  huge.layers = huge.components = 4096;
  ASSERT_TRUE(
      nn::WriteTensorFile(TmpPath("huge.ftm"), *tensors,
                          {{"sphere_model", SphereModelSpecToJson(huge)}})
          .ok());
  auto big = LoadSphereModel(TmpPath("huge.ftm"));
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("more than 16 x"), std::string::npos)
      << big.status();
}

// SphereModelSpec::Validate / SphereFieldSpec::Validate hold the ranges the
// reader enforces; MakeSphereModel refuses a spec built in code by its
// field (the field spec only matters for kind "rfm").
TEST(SphereModel, SpecValidateNamesTheField) {
  EXPECT_TRUE(SphereModelSpec().Validate().ok());
  EXPECT_TRUE(SphereFieldSpec().Validate().ok());
  struct Bad {
    void (*edit)(SphereModelSpec&);
    const char* says;
  };
  const Bad bad[] = {
      {[](SphereModelSpec& s) { s.kind = "cube"; }, "kind: want affine"},
      {[](SphereModelSpec& s) { s.layers = 0; },
       "layers: want an integer in [1, 4096], got 0"},
      {[](SphereModelSpec& s) { s.components = 5000; }, "components:"},
      {[](SphereModelSpec& s) { s.blocks = -1; }, "blocks:"},
      {[](SphereModelSpec& s) { s.hidden = 0; }, "hidden:"},
      {[](SphereModelSpec& s) { s.bins = 1025; }, "bins:"},
      {[](SphereModelSpec& s) {
         s.kind = "rfm";
         s.field.depth = 17;
       },
       "field: want width in [1, 4096] and depth in [1, 16]"},
      {[](SphereModelSpec& s) {
         s.kind = "rfm";
         s.field.activation = "swish";
       },
       "field: unknown activation 'swish'"},
      {[](SphereModelSpec& s) {
         s.kind = "rfm";
         s.field.fourier_scale = 0;
       },
       "fourier_scale in (0, 1e4]"},
      {[](SphereModelSpec& s) {
         s.kind = "rfm";
         s.field.step_size = std::nan("");
       },
       "field: step_size must be in (0, 1], got nan"},
  };
  for (const Bad& b : bad) {
    SphereModelSpec spec;
    spec.layers = 2;
    b.edit(spec);
    absl::Status s = spec.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.says;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
    Rng rng(1);
    s = MakeSphereModel(spec, {}, rng).status();
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
    if (spec.kind == "rfm") {
      EXPECT_EQ(spec.field.Validate(), spec.Validate());
      spec.kind = "affine";  // other kinds ignore the field
      EXPECT_TRUE(spec.Validate().ok());
    }
  }
}

}  // namespace
}  // namespace flowtape::models
