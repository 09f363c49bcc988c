// Exchange with PyTorch's layout: export then import into a differently
// initialised model reproduces log-probabilities bit for bit (MADE with a
// context, Glow's convolutions, residual flows' spectral-norm layers);
// linear weights and masks are [out, in] in the file, convolutions as they
// are; dtypes convert; every mismatch is a Status and changes nothing.
#include "io/torch_exchange.h"

#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "models/zoo.h"

namespace flowtape::io {
namespace {

using models::ModelConfig;

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::shared_ptr<flows::FlowModel> Make(const std::string& family,
                                       const ModelConfig& c, uint64_t seed) {
  Rng rng(seed);
  auto m = models::MakeModel(family, c, rng).value();
  for (Tensor p : m->Parameters())
    for (int64_t i = 0; i < p.numel(); ++i)
      p.mutable_data<double>()[i] += 0.2 * rng.Normal();
  return m;
}

Tensor Batch(const ModelConfig& c, Rng& rng) {
  std::vector<int64_t> dims = {4};
  for (int64_t d : c.event.dims()) dims.push_back(d);
  return Tensor::Randn(Shape(dims), rng);
}

std::map<std::string, Shape> FileShapes(const std::string& path) {
  std::map<std::string, Shape> out;
  const nn::NamedTensors file = ReadSafetensors(path).value();
  for (const auto& [name, t] : file) out[name] = t.shape();
  return out;
}

TEST(TorchExchange, ExportImportReproducesLogProbs) {
  struct Case {
    std::string family;
    ModelConfig config;
  };
  ModelConfig maf, glow, resflow;
  maf.event = Shape{3};
  maf.layers = 2;
  maf.hidden = {8, 6};
  maf.context_dim = 2;
  glow.event = Shape{1, 4, 4};
  glow.levels = 2;
  glow.depth = 1;
  glow.channels = 5;
  resflow.event = Shape{2};
  resflow.layers = 2;
  resflow.hidden = {7};
  for (const Case& k :
       {Case{"maf", maf}, Case{"glow", glow}, Case{"resflow", resflow}}) {
    SCOPED_TRACE(k.family);
    auto a = Make(k.family, k.config, 1), b = Make(k.family, k.config, 2);
    Rng rng(3);
    Tensor x = Batch(k.config, rng);
    Tensor c = k.config.context_dim > 0 ? Tensor::Randn({4, 2}, rng) : Tensor();
    NoGradScope no_grad;
    Rng r1(4), r2(4), r3(4);
    a->LogProb(x, c, &r1);  // ActNorm's data-dependent initialisation
    const Tensor want = a->LogProb(x, c, &r2);
    const std::string path = TmpPath(k.family + ".safetensors");
    ASSERT_TRUE(ExportSafetensors(path, *a, {{"family", k.family}}).ok());
    Metadata meta;
    absl::Status s = ImportSafetensors(path, *b, &meta);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(meta.at("family"), k.family);
    const Tensor got = b->LogProb(x, c, &r3);
    EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), 4 * 8), 0);
    // Parameters and buffers alike, under their dotted names.
    EXPECT_EQ(FileShapes(path).size(),
              a->NamedParameters().size() + a->NamedBuffers().size());
  }
}

TEST(TorchExchange, LinearWeightsAndMasksAreOutByIn) {
  ModelConfig c;
  c.event = Shape{3};
  c.layers = 1;
  c.hidden = {8, 6};
  c.context_dim = 2;
  auto maf = Make("maf", c, 1);
  const std::string path = TmpPath("layout.safetensors");
  ASSERT_TRUE(ExportSafetensors(path, *maf).ok());
  auto shapes = FileShapes(path);
  // MADE 3 -> 8 -> 6 -> 6 (2 per dim), context 2 -> 8 and 2 -> 6.
  EXPECT_EQ(shapes.at("flow.0.made.layer0.weight"), Shape({8, 3}));
  EXPECT_EQ(shapes.at("flow.0.made.layer0.mask"), Shape({8, 3}));
  EXPECT_EQ(shapes.at("flow.0.made.layer1.weight"), Shape({6, 8}));
  EXPECT_EQ(shapes.at("flow.0.made.layer2.weight"), Shape({6, 6}));
  EXPECT_EQ(shapes.at("flow.0.made.layer0.bias"), Shape({8}));
  EXPECT_EQ(shapes.at("flow.0.made.context1.weight"), Shape({6, 2}));
  EXPECT_EQ(shapes.at("flow.0.made.order"), Shape({3}));
  // The transposed values: file[o, i] = ours[i, o].
  auto file = ReadSafetensors(path).value();
  Tensor ours;
  for (const auto& [n, t] : maf->NamedParameters())
    if (n == "flow.0.made.layer1.weight") ours = t;
  for (const auto& [n, t] : file) {
    if (n == "flow.0.made.layer1.weight") {
      for (int64_t o = 0; o < 6; ++o)
        for (int64_t i = 0; i < 8; ++i)
          EXPECT_EQ(t[o * 8 + i], ours[i * 6 + o]);
    }
  }

  // Convolutions and 1x1 invertible convolutions keep their layout.
  ModelConfig g;
  g.event = Shape{1, 4, 4};
  g.levels = 1;
  g.depth = 1;
  g.channels = 5;
  auto glow = Make("glow", g, 1);
  ASSERT_TRUE(ExportSafetensors(path, *glow).ok());
  shapes = FileShapes(path);
  for (const auto& list : {glow->NamedParameters(), glow->NamedBuffers()})
    for (const auto& [n, t] : list) EXPECT_EQ(shapes.at(n), t.shape()) << n;
  EXPECT_TRUE(TransposedNames(*glow).empty());
}

TEST(TorchExchange, DtypesConvertOnImport) {
  ModelConfig c;
  c.event = Shape{2};
  c.layers = 2;
  c.hidden = {5};
  auto f64 = Make("realnvp", c, 1), f32 = Make("realnvp", c, 2);
  f32->To(kFloat32);
  const std::string p64 = TmpPath("f64.safetensors"),
                    p32 = TmpPath("f32.safetensors");
  ASSERT_TRUE(ExportSafetensors(p64, *f64).ok());
  ASSERT_TRUE(ExportSafetensors(p32, *f32).ok());
  const nn::NamedTensors file = ReadSafetensors(p32).value();
  for (const auto& [n, t] : file) EXPECT_EQ(t.dtype(), kFloat32) << n;
  auto wide = Make("realnvp", c, 3);
  ASSERT_TRUE(ImportSafetensors(p32, *wide).ok());  // exact
  const auto w = wide->NamedParameters(), n32 = f32->NamedParameters();
  for (size_t k = 0; k < w.size(); ++k)
    EXPECT_EQ(w[k].second.ToVector(), n32[k].second.ToVector());
  ASSERT_TRUE(ImportSafetensors(p64, *f32).ok());  // rounded
  const auto n64 = f64->NamedParameters(), r = f32->NamedParameters();
  for (size_t k = 0; k < n64.size(); ++k)
    for (int64_t i = 0; i < n64[k].second.numel(); ++i)
      EXPECT_EQ(r[k].second[i],
                static_cast<double>(static_cast<float>(n64[k].second[i])));
}

// Edits the export of a small MAF, imports it into a fresh one and expects
// `needle`, with the model unchanged.
void ExpectImportError(const std::function<void(nn::NamedTensors&)>& edit,
                       const std::string& needle) {
  ModelConfig c;
  c.event = Shape{3};
  c.layers = 1;
  c.hidden = {4};
  auto a = Make("maf", c, 1), b = Make("maf", c, 2);
  const std::string path = TmpPath("edit.safetensors");
  ASSERT_TRUE(ExportSafetensors(path, *a).ok());
  auto file = ReadSafetensors(path).value();
  edit(file);
  ASSERT_TRUE(WriteSafetensors(path, file).ok());
  std::vector<std::vector<double>> before;
  for (const auto& list : {b->NamedParameters(), b->NamedBuffers()})
    for (const auto& [n, t] : list) before.push_back(t.ToVector());
  absl::Status s = ImportSafetensors(path, *b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("safetensors '" + path + "': " + needle),
            std::string::npos)
      << s;
  std::vector<std::vector<double>> after;
  for (const auto& list : {b->NamedParameters(), b->NamedBuffers()})
    for (const auto& [n, t] : list) after.push_back(t.ToVector());
  EXPECT_EQ(before, after);
}

Tensor& Entry(nn::NamedTensors& f, const std::string& name) {
  for (auto& [n, t] : f)
    if (n == name) return t;
  ADD_FAILURE() << name;
  return f[0].second;
}

TEST(TorchExchange, ImportRefusesMismatches) {
  ExpectImportError(
      [](nn::NamedTensors& f) { f.emplace_back("extra", Tensor::Ones({1})); },
      "unknown name 'extra'");
  ExpectImportError(
      [](nn::NamedTensors& f) {
        f.emplace_back("optimizer/step", Tensor::Ones({}));
      },
      "unknown name 'optimizer/step'");
  ExpectImportError([](nn::NamedTensors& f) { f.erase(f.begin()); },
                    "missing 'flow.0.made.layer0.weight'");
  ExpectImportError(
      [](nn::NamedTensors& f) {  // flowtape's [in, out] instead of [out, in]
        Entry(f, "flow.0.made.layer0.weight") = Tensor::Zeros({3, 4});
      },
      "'flow.0.made.layer0.weight' has shape [3, 4] in the file but [4, 3] "
      "in the module (PyTorch's [out, in] layout)");
  ExpectImportError(
      [](nn::NamedTensors& f) {
        Entry(f, "flow.0.made.layer0.bias") = Tensor::Zeros({5});
      },
      "'flow.0.made.layer0.bias' has shape [5] in the file but [4]");
  ExpectImportError(
      [](nn::NamedTensors& f) {
        Entry(f, "flow.0.made.layer1.bias").mutable_data<double>()[1] =
            std::nan("");
      },
      "'flow.0.made.layer1.bias' holds a non-finite value");
  ExpectImportError(
      [](nn::NamedTensors& f) {
        Entry(f, "flow.0.made.layer0.mask").mutable_data<double>()[0] = 2;
      },
      "'buffer/flow.0.made.layer0.mask' holds a mask entry other than 0 or 1");
}

}  // namespace
}  // namespace flowtape::io
