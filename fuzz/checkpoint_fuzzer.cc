// Checkpoint reader (nn/checkpoint.h) on arbitrary bytes as a file. An
// accepted file's tensors are rank <= 4 and round-trip (WriteTensorFile /
// ReadTensorFile) bit for bit with their metadata; a model description in
// the metadata parses or is refused (models/model_spec.h), and the file
// goes through models::LoadModel (the spec -> MakeModel path behind its
// size guard), which either refuses it or gives a model with finite
// parameters that scores a few rows and saves (SaveModel) to a file that
// loads to the same bits; a calibration model's description
// (models/calibration_model.h) either loads into a model with finite
// tensors that maps rows to probabilities or is refused; an IDF model's
// (compression/idf.h, metadata "idf2", as flowtape-compress --model reads
// it) either is refused by LoadIdf or gives a flow whose codec, if it
// builds, compresses an image and decompresses it to the same pixels;
// LoadCheckpoint into a small MLP with Adam either succeeds with finite
// parameters and integer counters, or fails and leaves both untouched.
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "compression/idf.h"
#include "compression/idf_codec.h"
#include "fuzz/fuzz_util.h"
#include "models/calibration_model.h"
#include "models/model_file.h"
#include "models/model_spec.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/optim.h"

namespace {

using flowtape::Tensor;
using flowtape::nn::NamedTensors;

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(),
                     a.numel() * flowtape::DTypeSize(a.dtype())) == 0;
}

std::vector<std::vector<double>> Values(const NamedTensors& ts) {
  std::vector<std::vector<double>> v;
  for (const auto& [name, t] : ts) v.push_back(t.ToVector());
  return v;
}

// A file with a calibration model description: LoadCalibrationModel gives
// a model whose tensors are finite and whose probabilities on a few rows
// are in [0, 1], or a Status.
void CheckCalibrationModel(const std::string& path) {
  namespace models = flowtape::models;
  auto model = models::LoadCalibrationModel(path);
  flowtape::fuzz::Count(model.status());
  if (!model.ok()) return;
  for (const auto& [name, t] : (*model)->NamedParameters())
    for (int64_t i = 0; i < t.numel(); ++i) FUZZ_EXPECT(std::isfinite(t[i]));
  flowtape::NoGradScope no_grad;
  const int64_t inputs = (*model)->classifier().in_features();
  if (inputs > 4096) return;
  flowtape::Rng rng(2);
  Tensor q = (*model)->Probabilities(Tensor::Randn({3, inputs}, rng));
  for (int64_t i = 0; i < q.numel(); ++i)
    FUZZ_EXPECT(!(q[i] < 0) && !(q[i] > 1 + 1e-9));
}

// Every parameter and buffer, as float64 values.
std::vector<std::vector<double>> State(const flowtape::nn::Module& m) {
  auto v = Values(m.NamedParameters());
  for (auto& b : Values(m.NamedBuffers())) v.push_back(std::move(b));
  return v;
}

// A file with a model description: LoadModel refuses it or gives a model
// with finite parameters that scores two rows (their values unchecked: a
// fuzzed model may overflow) and saves to a file that loads back the same.
void CheckModelFile(const std::string& path) {
  namespace models = flowtape::models;
  auto model = models::LoadModel(path);
  flowtape::fuzz::Count(model.status());
  if (!model.ok()) return;
  int64_t values = 0;
  for (const auto& [name, t] : (*model)->NamedParameters()) {
    values += t.numel();
    for (int64_t i = 0; i < t.numel(); ++i) FUZZ_EXPECT(std::isfinite(t[i]));
  }
  auto spec = models::ReadModelSpec(path);
  FUZZ_EXPECT(spec.ok());
  if (!spec.ok() || values > (int64_t{1} << 16)) return;
  const flowtape::Shape event = spec->config.event;
  if (event.numel() <= 256) {
    flowtape::NoGradScope no_grad;
    flowtape::TapeScope scope;
    flowtape::Rng rng(3);
    std::vector<int64_t> dims = event.dims();
    dims.insert(dims.begin(), 2);
    const int64_t k = spec->config.context_dim;
    Tensor x = Tensor::Randn(flowtape::Shape(dims), rng);
    Tensor c = k > 0 ? Tensor::Randn({2, k}, rng) : Tensor();
    Tensor lp = (*model)->LogProb(x, c);
    FUZZ_EXPECT(lp.numel() == 2);
  }
  const std::string copy = path + ".model";
  FUZZ_EXPECT(models::SaveModel(copy, *spec, **model).ok());
  auto again = models::LoadModel(copy);
  FUZZ_EXPECT(again.ok() && State(**again) == State(**model));
}

// A file with an IDF description: LoadIdf refuses it or gives a flow; its
// codec, if the parameters make one, encodes a random image losslessly.
void CheckIdfModel(const std::string& path) {
  namespace compression = flowtape::compression;
  auto flow = compression::LoadIdf(path);
  flowtape::fuzz::Count(flow.status());
  if (!flow.ok()) return;
  auto codec = compression::IdfCodec::Create(**flow);
  flowtape::fuzz::Count(codec.status());
  if (!codec.ok() || codec->dims() > 4096) return;
  compression::IdfImages images;
  images.count = 1;
  images.height = codec->height();
  images.width = codec->width();
  flowtape::Rng rng(4);
  for (int64_t i = 0; i < codec->dims(); ++i)
    images.pixels.push_back(static_cast<uint8_t>(rng.UniformInt(256)));
  auto bytes = codec->Compress(images);
  flowtape::fuzz::Count(bytes.status());
  if (!bytes.ok()) return;
  auto back = codec->Decompress(*bytes);
  FUZZ_EXPECT(back.ok() && back->pixels == images.pixels);
}

// Checks one file's bytes (see the top).
void Check(const std::string& bytes) {
  namespace nn = flowtape::nn;
  const std::string path = flowtape::fuzz::WriteScratch(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), ".ckpt");
  nn::Metadata meta;
  auto read = nn::ReadTensorFile(path, &meta);
  flowtape::fuzz::Count(read.status());
  if (read.ok()) {
    for (const auto& [name, t] : *read) FUZZ_EXPECT(t.rank() <= 4);
    const std::string copy = path + ".copy";
    FUZZ_EXPECT(nn::WriteTensorFile(copy, *read, meta).ok());
    nn::Metadata meta2;
    auto back = nn::ReadTensorFile(copy, &meta2);
    FUZZ_EXPECT(back.ok() && back->size() == read->size() && meta2 == meta);
    for (size_t i = 0; back.ok() && i < back->size(); ++i)
      FUZZ_EXPECT((*back)[i].first == (*read)[i].first &&
                  SameBits((*back)[i].second, (*read)[i].second));
    auto it = meta.find("model");
    if (it != meta.end()) {
      auto spec = flowtape::models::ModelSpecFromJson(it->second);
      flowtape::fuzz::Count(spec.status());
      if (spec.ok())
        FUZZ_EXPECT(flowtape::models::ModelSpecFromJson(
                        flowtape::models::ModelSpecToJson(*spec))
                        .ok());
      CheckModelFile(path);
    }
    if (meta.count("calibration_model") != 0) CheckCalibrationModel(path);
    if (meta.count("idf2") != 0) CheckIdfModel(path);
  }
  flowtape::Rng rng(1);
  auto mlp_ptr = nn::MLP::Create({2, 3, 1}, nn::Activation::kTanh, rng).value();
  nn::MLP& mlp = *mlp_ptr;
  auto adam = nn::Adam::Create(mlp, nn::AdamOptions()).value();
  const auto params = Values(mlp.NamedParameters());
  const auto state = Values(adam->NamedState());
  absl::Status s = nn::LoadCheckpoint(path, mlp, adam.get());
  flowtape::fuzz::Count(s);
  if (s.ok()) {
    for (const auto& v : Values(mlp.NamedParameters()))
      for (double x : v) FUZZ_EXPECT(std::isfinite(x));
    FUZZ_EXPECT(adam->step_count() >= 0);
  } else {
    FUZZ_EXPECT(Values(mlp.NamedParameters()) == params);
    FUZZ_EXPECT(Values(adam->NamedState()) == state);
  }
}

}  // namespace

// The bytes as given, and (most mutations break the checksum) the same bytes
// with the header's payload length and CRC-32 made to match, so the payload
// decoder and the value checks see the mutations too.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  if (size >= 32) {
    const uint64_t payload = size - 32;
    const uint64_t crc =
        crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data + 32),
              static_cast<uInt>(payload));
    for (int i = 0; i < 8; ++i) {
      bytes[16 + i] = static_cast<char>(payload >> (8 * i));
      bytes[24 + i] = static_cast<char>(crc >> (8 * i));
    }
    Check(bytes);
  }
  return 0;
}
