// Checkpoints: round trip (with optimizer state and module buffers) and every
// corruption case returning its error while leaving the module untouched.
#include "nn/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/layers.h"
#include "nn/optim.h"

namespace flowtape::nn {
namespace {

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::vector<std::vector<double>> Values(const NamedTensors& ts) {
  std::vector<std::vector<double>> v;
  for (const auto& [name, t] : ts) v.push_back(t.ToVector());
  return v;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

// CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, init and xorout
// 0xFFFFFFFF) bit by bit, independent of zlib; CrcCheckValue pins it to the
// catalogued check value.
uint32_t BitwiseCrc32(const std::string& s, size_t from = 0) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = from; i < s.size(); ++i) {
    c ^= static_cast<unsigned char>(s[i]);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return c ^ 0xFFFFFFFFu;
}

uint64_t HeaderU64(const std::string& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t{static_cast<unsigned char>(b[at + i])} << (8 * i);
  return v;
}

// Recomputes the header checksum after editing the payload.
void Resum(std::string& b) {
  const uint64_t h = BitwiseCrc32(b, 32);
  for (int i = 0; i < 8; ++i) b[24 + i] = static_cast<char>(h >> (8 * i));
}

void TrainSteps(const MLP& net, Optimizer& opt, int steps) {
  Tensor x = Tensor::FromVector({3, 2}, {0.1, -0.4, 1.0, 0.3, -0.7, 0.2});
  for (int i = 0; i < steps; ++i) {
    opt.ZeroGrad();
    Backward(Mean(Square(net(x))));
    Tape::Get().Reset();
    opt.Step();
  }
}

TEST(Checkpoint, RoundTripWithOptimizerResumesBitIdentically) {
  Rng r1(1), r2(2);
  auto a_ptr = MLP::Create({2, 5, 3}, Activation::kTanh, r1).value();
  auto b_ptr = MLP::Create({2, 5, 3}, Activation::kTanh, r2).value();
  MLP &a = *a_ptr, &b = *b_ptr;
  AdamOptions o;
  o.lr = 0.05;
  auto oa = Adam::Create(a, o).value();
  auto ob = Adam::Create(b, o).value();
  TrainSteps(a, *oa, 3);
  const std::string path = TmpPath("round_trip.ckpt");
  ASSERT_TRUE(SaveCheckpoint(path, a, oa.get()).ok());
  ASSERT_NE(Values(a.NamedParameters()), Values(b.NamedParameters()));
  absl::Status s = LoadCheckpoint(path, b, ob.get());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Values(a.NamedParameters()), Values(b.NamedParameters()));
  EXPECT_EQ(Values(oa->NamedState()), Values(ob->NamedState()));
  EXPECT_EQ(ob->step_count(), 3);
  TrainSteps(a, *oa, 4);
  TrainSteps(b, *ob, 4);
  EXPECT_EQ(Values(a.NamedParameters()), Values(b.NamedParameters()));
}

TEST(Checkpoint, WeightsOnlyIgnoresOptimizerEntriesAndLeavesNoTempFiles) {
  Rng r1(1), r2(2);
  auto a_ptr = MLP::Create({2, 4, 1}, Activation::kRelu, r1).value();
  auto b_ptr = MLP::Create({2, 4, 1}, Activation::kRelu, r2).value();
  MLP &a = *a_ptr, &b = *b_ptr;
  auto opt = Sgd::Create(a, SgdOptions()).value();
  const std::string dir = TmpPath("atomic");
  std::system(("mkdir -p " + dir).c_str());
  const std::string path = dir + "/w.ckpt";
  ASSERT_TRUE(SaveCheckpoint(path, a, opt.get()).ok());
  ASSERT_TRUE(SaveCheckpoint(path, a, opt.get()).ok());  // overwrite in place
  ASSERT_TRUE(LoadCheckpoint(path, b).ok());
  EXPECT_EQ(Values(a.NamedParameters()), Values(b.NamedParameters()));
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') files.push_back(e->d_name);
  closedir(d);
  EXPECT_EQ(files, std::vector<std::string>{"w.ckpt"});
}

TEST(Checkpoint, TensorFileRoundTripsEveryRank) {
  Rng rng(3);
  NamedTensors ts = {{"scalar", Tensor::Scalar(-0.0)},
                     {"v", Tensor::Randn({3}, rng)},
                     {"empty", Tensor::Zeros({0, 2})},
                     {"img", Tensor::Randn({1, 2, 3, 2}, rng)}};
  ts[1].second.mutable_data<double>()[1] = 1e-310;  // subnormal survives
  const std::string path = TmpPath("ranks.ckpt");
  ASSERT_TRUE(WriteTensorFile(path, ts).ok());
  auto back = ReadTensorFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ((*back)[i].first, ts[i].first);
    EXPECT_EQ((*back)[i].second.shape(), ts[i].second.shape());
    EXPECT_EQ((*back)[i].second.ToVector(), ts[i].second.ToVector());
  }
  EXPECT_TRUE(std::signbit((*back)[0].second.item()));
}

// Each corruption: (file bytes, optimizer wanted) -> status code + message.
class Corruption : public ::testing::Test {
 protected:
  void SetUp() override {
    auto saved_ptr =
        MLP::Create({2, 3, 1}, Activation::kTanh, rng_saved_).value();
    MLP& saved = *saved_ptr;
    auto opt = Adam::Create(saved, AdamOptions()).value();
    ASSERT_TRUE(SaveCheckpoint(good_path_, saved, opt.get()).ok());
    good_ = ReadAll(good_path_);
  }
  // Loads `bytes` into a fresh module (and optimizer) and checks that the
  // error matches and nothing changed.
  void ExpectError(const std::string& bytes, absl::StatusCode code,
                   const std::string& needle, bool with_optimizer = false,
                   std::vector<int64_t> sizes = {2, 3, 1}) {
    const std::string path = TmpPath("bad.ckpt");
    WriteAll(path, bytes);
    Rng rng(99);
    auto m_ptr = MLP::Create(sizes, Activation::kTanh, rng).value();
    MLP& m = *m_ptr;
    auto opt = Sgd::Create(m, SgdOptions()).value();
    auto before = Values(m.NamedParameters());
    auto state_before = Values(opt->NamedState());
    absl::Status s =
        LoadCheckpoint(path, m, with_optimizer ? opt.get() : nullptr);
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
    EXPECT_NE(s.message().find(path), std::string::npos) << s;
    EXPECT_EQ(Values(m.NamedParameters()), before);
    EXPECT_EQ(Values(opt->NamedState()), state_before);
  }
  std::string Saved(std::vector<int64_t> sizes) {
    Rng rng(5);
    auto m_ptr = MLP::Create(sizes, Activation::kTanh, rng).value();
    MLP& m = *m_ptr;
    const std::string path = TmpPath("other.ckpt");
    EXPECT_TRUE(SaveCheckpoint(path, m).ok());
    return ReadAll(path);
  }
  Rng rng_saved_{5};
  std::string good_path_ = TmpPath("good.ckpt");
  std::string good_;
};

TEST_F(Corruption, MissingFile) {
  Rng rng(1);
  auto m_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, rng).value();
  MLP& m = *m_ptr;
  auto before = Values(m.NamedParameters());
  absl::Status s = LoadCheckpoint(TmpPath("does_not_exist.ckpt"), m);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("file not found"), std::string::npos);
  EXPECT_EQ(Values(m.NamedParameters()), before);
}

TEST_F(Corruption, Truncated) {
  ExpectError("", absl::StatusCode::kDataLoss, "truncated");
  ExpectError(good_.substr(0, 20), absl::StatusCode::kDataLoss, "truncated");
  ExpectError(good_.substr(0, 40), absl::StatusCode::kDataLoss, "truncated");
  ExpectError(good_.substr(0, good_.size() - 1), absl::StatusCode::kDataLoss,
              "truncated");
}

TEST_F(Corruption, TrailingBytes) {
  ExpectError(good_ + "x", absl::StatusCode::kDataLoss, "trailing bytes");
}

TEST_F(Corruption, BadMagic) {
  std::string b = good_;
  b[0] = 'X';
  ExpectError(b, absl::StatusCode::kDataLoss, "bad magic");
}

TEST_F(Corruption, UnsupportedVersion) {
  std::string b = good_;
  b[8] = 3;
  ExpectError(b, absl::StatusCode::kFailedPrecondition,
              "unsupported version 3");
}

TEST_F(Corruption, ChecksumMismatch) {
  for (size_t at : {size_t{32}, size_t{45}, good_.size() - 3}) {
    std::string b = good_;
    b[at] ^= 0x10;
    ExpectError(b, absl::StatusCode::kDataLoss, "checksum mismatch");
  }
}

TEST_F(Corruption, MissingName) {
  ExpectError(Saved({2, 3}), absl::StatusCode::kInvalidArgument,
              "missing 'layer1.weight'", false, {2, 3, 1});
}

TEST_F(Corruption, UnknownName) {
  ExpectError(Saved({2, 3, 1}), absl::StatusCode::kInvalidArgument,
              "unknown name 'layer1.bias'", false, {2, 3});
}

TEST_F(Corruption, WrongShape) {
  // layer0 matches by name but layer0.weight is [2, 4] in the file.
  ExpectError(Saved({2, 4, 1}), absl::StatusCode::kInvalidArgument,
              "'layer0.weight' has shape [2, 4] in the file but [2, 3]");
}

TEST_F(Corruption, OptimizerStateMissingOrForeign) {
  // Weights-only file, optimizer requested.
  ExpectError(Saved({2, 3, 1}), absl::StatusCode::kInvalidArgument,
              "missing 'optimizer/step'", true);
  // Adam state loaded into an SGD (no momentum): Adam's slots are unknown.
  ExpectError(good_, absl::StatusCode::kInvalidArgument,
              "unknown name 'optimizer/layer0.bias.exp_avg'", true);
}

TEST_F(Corruption, MalformedPayloadWithValidChecksum) {
  // A payload that claims more tensors than it holds, correctly checksummed.
  NamedTensors one = {{"a", Tensor::Ones({2})}};
  const std::string path = TmpPath("one.ckpt");
  ASSERT_TRUE(WriteTensorFile(path, one).ok());
  std::string b = ReadAll(path);
  b[40] = 2;  // count 1 -> 2 (after the 8-byte metadata count)
  Resum(b);
  ExpectError(b, absl::StatusCode::kDataLoss, "malformed payload");
}

// Dims [0, 2^63] (numel 0, so a product bound alone lets them through) and
// [2^51, 0], correctly checksummed: a Status, not a negative dim.
TEST_F(Corruption, HugeDimWithValidChecksum) {
  NamedTensors one = {{"a", Tensor::Zeros({0, 2})}};
  const std::string path = TmpPath("dims.ckpt");
  ASSERT_TRUE(WriteTensorFile(path, one).ok());
  const std::string good = ReadAll(path);
  // Payload: meta_count (8) count (8) name_len (4) "a" (1) dtype (4)
  // rank (4), then dims at 61, 69.
  std::string b = good;
  b[69] = 0;
  b[76] = static_cast<char>(0x80);  // dim 1 = 2^63
  Resum(b);
  ExpectError(b, absl::StatusCode::kDataLoss,
              "'a': dim 1 = 9223372036854775808 too large");
  b = good;
  b[67] = 8;  // dim 0 = 2^51
  b[69] = 0;
  Resum(b);
  ExpectError(b, absl::StatusCode::kDataLoss, "'a': dim 0 = 2251799813685248");
}

TEST_F(Corruption, NonzeroReservedFlags) {
  std::string b = good_;
  b[12] = 1;  // flags live at bytes 12..15, outside the checksum
  ExpectError(b, absl::StatusCode::kFailedPrecondition,
              "reserved header flags are 1");
}

// A file with NaN / Inf parameters (valid format and checksum) is refused,
// naming the tensor; ReadTensorFile itself still returns the exact bits.
TEST_F(Corruption, NonFiniteValues) {
  for (double bad : {std::nan(""), -HUGE_VAL}) {
    Rng rng(1);
    auto m_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, rng).value();
    MLP& m = *m_ptr;
    NamedTensors ts;
    for (const auto& [name, t] : m.NamedParameters())
      ts.emplace_back(name, t.Detach());
    ts[1].second.mutable_data<double>()[2] = bad;
    const std::string path = TmpPath("nonfinite.ckpt");
    ASSERT_TRUE(WriteTensorFile(path, ts).ok());
    ExpectError(ReadAll(path), absl::StatusCode::kInvalidArgument,
                "'" + ts[1].first + "' holds a non-finite value");
    auto back = ReadTensorFile(path);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(std::isnan(bad), std::isnan((*back)[1].second[2]));
  }
}

TEST(Checkpoint, FileIsWorldReadable) {
  Rng rng(1);
  auto m_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, rng).value();
  MLP& m = *m_ptr;
  const std::string path = TmpPath("mode.ckpt");
  ASSERT_TRUE(SaveCheckpoint(path, m).ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644);
}

// An MLP ("net.*") with buffers "state" [k] (random) and "net_calls" []
// (k < 0: no buffers).
class WithBuffers : public Module {
 public:
  WithBuffers(int64_t k, Rng& rng) {
    net_ = RegisterModule("net", MLP::Create(std::vector<int64_t>{2, 3, 1},
                                             Activation::kTanh, rng)
                                     .value());
    if (k < 0) return;
    state_ = RegisterBuffer("state", Tensor::Randn({k}, rng));
    calls_ = RegisterBuffer("net_calls", Tensor::Scalar(rng.Normal()));
  }
  Tensor state_, calls_;
  std::shared_ptr<MLP> net_;
};

NamedTensors All(const Module& m) {
  NamedTensors all = m.NamedParameters();
  for (auto& [name, t] : m.NamedBuffers()) all.emplace_back(name, t);
  return all;
}

TEST(CheckpointBuffers, RoundTripRestoresBuffersInPlace) {
  Rng r1(1), r2(2);
  WithBuffers a(3, r1), b(3, r2);
  const std::string path = TmpPath("buffers.ckpt");
  ASSERT_TRUE(SaveCheckpoint(path, a).ok());
  auto file = ReadTensorFile(path);
  ASSERT_TRUE(file.ok());
  std::vector<std::string> names;
  for (const auto& [name, t] : *file) names.push_back(name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"net.layer0.weight", "net.layer0.bias",
                                      "net.layer1.weight", "net.layer1.bias",
                                      "buffer/state", "buffer/net_calls"}));
  Tensor handle = b.state_;  // the module's own handle sees the load
  ASSERT_NE(Values(a.NamedBuffers()), Values(b.NamedBuffers()));
  absl::Status s = LoadCheckpoint(path, b);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Values(All(a)), Values(All(b)));
  EXPECT_EQ(handle.ToVector(), a.state_.ToVector());
  EXPECT_FALSE(b.state_.requires_grad());
}

// Each buffer mismatch: a Status naming the entry, nothing changed.
void ExpectBufferError(const std::string& file, Module& m,
                       const std::string& needle) {
  auto before = Values(All(m));
  absl::Status s = LoadCheckpoint(file, m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  EXPECT_EQ(Values(All(m)), before);
}

TEST(CheckpointBuffers, MissingExtraMisshapedOrNonFiniteBuffers) {
  Rng r1(1), r2(2), r3(3);
  WithBuffers saved(3, r1);
  const std::string path = TmpPath("buffers_bad.ckpt");
  ASSERT_TRUE(SaveCheckpoint(path, saved).ok());
  // Missing: a parameters-only file (as written before buffers were saved),
  // whose parameters alone would load.
  const std::string old_path = TmpPath("params_only.ckpt");
  ASSERT_TRUE(WriteTensorFile(old_path, saved.NamedParameters()).ok());
  WithBuffers fresh(3, r2);
  ExpectBufferError(old_path, fresh, "missing 'buffer/state' (a module buffer");
  // Mis-shaped: state [4] in the module, [3] in the file.
  WithBuffers wide(4, r3);
  ExpectBufferError(path, wide,
                    "'buffer/state' has shape [3] in the file but [4] in the "
                    "module");
  // Extra: the same file into a buffer-less module of the same parameters.
  Rng r4(4);
  WithBuffers plain(-1, r4);
  ExpectBufferError(path, plain,
                    "unknown name 'buffer/net_calls' (not in the module's "
                    "buffers)");
  // Non-finite buffer value (valid format and checksum).
  NamedTensors ts;
  for (const auto& [name, t] : saved.NamedParameters())
    ts.emplace_back(name, t.Detach());
  ts.emplace_back("buffer/state", Tensor::Zeros({3}));
  ts.emplace_back("buffer/net_calls", Tensor::Scalar(HUGE_VAL));
  const std::string inf_path = TmpPath("buffer_inf.ckpt");
  ASSERT_TRUE(WriteTensorFile(inf_path, ts).ok());
  ExpectBufferError(inf_path, fresh,
                    "'buffer/net_calls' holds a non-finite value");
}

// ---- format version 2 ----

TEST(CheckpointFormat, ChecksumIsZlibCrc32OfThePayload) {
  // The catalogued CRC-32 check value; Python agrees:
  //   python3 -c "import zlib; print(hex(zlib.crc32(b'123456789')))"
  //   0xcbf43926
  ASSERT_EQ(BitwiseCrc32("123456789"), 0xCBF43926u);
  Rng rng(1);
  auto m_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, rng).value();
  MLP& m = *m_ptr;
  const std::string path = TmpPath("crc.ckpt");
  ASSERT_TRUE(SaveCheckpoint(path, m, nullptr, {{"note", "x"}}).ok());
  const std::string b = ReadAll(path);
  EXPECT_EQ(b[8], 2);  // version
  EXPECT_EQ(HeaderU64(b, 16), b.size() - 32);
  EXPECT_EQ(HeaderU64(b, 24), BitwiseCrc32(b, 32));
}

// A file written by the version-1 writer (MLP {2, 3, 1} with Adam after two
// steps; checked in): its checksum is FNV-1a's loop from offset basis
// 1469598103934665603, as a Python one-liner over the payload computes:
//   h = 1469598103934665603
//   for c in open(f, 'rb').read()[32:]: h = ((h ^ c) * 1099511628211) % 2**64
// and it loads into float64 and float32 models.
TEST(CheckpointFormat, Version1FilesStillLoadIntoEitherDtype) {
  const std::string path = "tests/nn/testdata/v1_mlp_adam.ckpt";
  const std::string b = ReadAll(path);
  ASSERT_EQ(b.size(), 1094u);
  EXPECT_EQ(b[8], 1);
  EXPECT_EQ(HeaderU64(b, 24), 0x3c6b321f83481300ull);
  uint64_t standard = 14695981039346656037ull;  // true FNV-1a 64 basis
  for (size_t i = 32; i < b.size(); ++i)
    standard = (standard ^ static_cast<unsigned char>(b[i])) * 1099511628211ull;
  EXPECT_NE(HeaderU64(b, 24), standard);
  const std::vector<double> w0 = {0.5500559824984903,  -0.90577825844322513,
                                  0.64493502681325143, 1.0051081678183489,
                                  -1.0749254607971093, 0.7619209303097314};
  for (DType dtype : {kFloat64, kFloat32}) {
    Rng rng(1);
    auto m_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, rng).value();
    MLP& m = *m_ptr;
    m.To(dtype);
    auto opt = Adam::Create(m, AdamOptions()).value();
    absl::Status s = LoadCheckpoint(path, m, opt.get());
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(opt->step_count(), 2);
    // A copy: NamedParameters() returns a temporary list.
    const Tensor w = m.NamedParameters()[0].second;
    EXPECT_EQ(w.dtype(), dtype);
    for (size_t i = 0; i < w0.size(); ++i)
      EXPECT_EQ(w[i], dtype == kFloat32
                          ? static_cast<double>(static_cast<float>(w0[i]))
                          : w0[i]);
    EXPECT_EQ(
        m.NamedParameters()[3].second[0],
        dtype == kFloat32
            ? static_cast<double>(static_cast<float>(-0.0020003496033212794))
            : -0.0020003496033212794);
  }
}

// Each tensor keeps its dtype in the file; loading converts: float32 into
// float64 exactly, float64 into float32 rounded to nearest.
TEST(CheckpointFormat, DtypesAreStoredAndConverted) {
  Rng r1(1), r2(2), r3(3);
  auto f32_ptr = MLP::Create({2, 5, 3}, Activation::kTanh, r1).value();
  MLP& f32 = *f32_ptr;
  f32.To(kFloat32);
  auto f64_ptr = MLP::Create({2, 5, 3}, Activation::kTanh, r2).value();
  MLP& f64 = *f64_ptr;
  const std::string p32 = TmpPath("f32.ckpt"), p64 = TmpPath("f64.ckpt");
  ASSERT_TRUE(SaveCheckpoint(p32, f32).ok());
  ASSERT_TRUE(SaveCheckpoint(p64, f64).ok());
  auto file = ReadTensorFile(p32);
  ASSERT_TRUE(file.ok());
  for (const auto& [name, t] : *file) EXPECT_EQ(t.dtype(), kFloat32) << name;
  // 4 bytes a value instead of 8: 33 values.
  EXPECT_EQ(ReadAll(p64).size() - ReadAll(p32).size(), 33u * 4);

  auto wide_ptr =
      MLP::Create({2, 5, 3}, Activation::kTanh, r3).value();  // float64

  MLP& wide = *wide_ptr;
  ASSERT_TRUE(LoadCheckpoint(p32, wide).ok());
  EXPECT_EQ(Values(wide.NamedParameters()), Values(f32.NamedParameters()));

  ASSERT_TRUE(LoadCheckpoint(p64, f32).ok());
  const auto want = f64.NamedParameters(), got = f32.NamedParameters();
  bool rounded = false;
  for (size_t k = 0; k < want.size(); ++k)
    for (int64_t i = 0; i < want[k].second.numel(); ++i) {
      const double v = want[k].second[i];
      EXPECT_EQ(got[k].second[i], static_cast<double>(static_cast<float>(v)));
      rounded |= got[k].second[i] != v;
    }
  EXPECT_TRUE(rounded);
}

TEST(CheckpointFormat, MetadataRoundTrips) {
  const std::string path = TmpPath("meta.ckpt");
  const Metadata meta = {{"model", "{\"family\": \"maf\"}"},
                         {"bytes", std::string("\0\xff\n", 3)}};
  NamedTensors ts = {{"a", Tensor::Ones({2})}};
  ASSERT_TRUE(WriteTensorFile(path, ts, meta).ok());
  Metadata back;
  auto read = ReadTensorFile(path, &back);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(back, meta);
  EXPECT_EQ(read->size(), 1u);
}

// Optimizer counters must be integers in [0, 2^53]; Adam's second moments
// non-negative; a float64 value beyond float32's range does not load into a
// float32 model. Each with a valid checksum.
class Domains : public ::testing::Test {
 protected:
  // Saves an Adam-trained MLP with entry `name`'s first value set to `v`
  // and loads it into a fresh model + Adam.
  absl::Status LoadWith(const std::string& name, double v,
                        DType dtype = kFloat64) {
    Rng r1(1), r2(2);
    auto a_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, r1).value();
    MLP& a = *a_ptr;
    auto oa = Adam::Create(a, AdamOptions()).value();
    TrainSteps(a, *oa, 2);
    const std::string path = TmpPath("domain.ckpt");
    EXPECT_TRUE(SaveCheckpoint(path, a, oa.get()).ok());
    auto file = ReadTensorFile(path);
    EXPECT_TRUE(file.ok());
    bool found = false;
    for (auto& [n, t] : *file)
      if (n == name) {
        t.mutable_data<double>()[0] = v;
        found = true;
      }
    EXPECT_TRUE(found) << name;
    EXPECT_TRUE(WriteTensorFile(path, *file).ok());
    auto b_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, r2).value();
    MLP& b = *b_ptr;
    b.To(dtype);
    auto ob = Adam::Create(b, AdamOptions()).value();
    auto before = Values(b.NamedParameters());
    absl::Status s = LoadCheckpoint(path, b, ob.get());
    if (!s.ok()) {
      EXPECT_EQ(Values(b.NamedParameters()), before);
      EXPECT_EQ(ob->step_count(), 0);
    }
    return s;
  }
};

TEST_F(Domains, CountersAreIntegersInRange) {
  for (double bad : {1e300, 9.3e18, -5.0, 0.5, 9007199254740994.0}) {
    for (const std::string name :
         {"optimizer/step", "optimizer/layer0.weight.step"}) {
      absl::Status s = LoadWith(name, bad);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
      EXPECT_NE(s.message().find("'" + name +
                                 "' holds a counter that is not "
                                 "an integer in [0, 2^53]"),
                std::string::npos)
          << s;
    }
  }
  EXPECT_TRUE(LoadWith("optimizer/step", 9007199254740992.0).ok());
  EXPECT_TRUE(LoadWith("optimizer/step", 0.0).ok());
}

TEST_F(Domains, SecondMomentsAreNonNegative) {
  absl::Status s = LoadWith("optimizer/layer1.bias.exp_avg_sq", -1e-9);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("holds a negative second moment"),
            std::string::npos)
      << s;
  EXPECT_TRUE(LoadWith("optimizer/layer1.bias.exp_avg", -1e-9).ok());
}

TEST_F(Domains, Float32RangeOnConversion) {
  EXPECT_TRUE(LoadWith("layer0.weight", 1e300).ok());
  absl::Status s = LoadWith("layer0.weight", 1e300, kFloat32);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'layer0.weight' holds a value beyond float32's "
                             "range (1e+300)"),
            std::string::npos)
      << s;
  EXPECT_TRUE(LoadWith("layer0.weight", FLT_MAX, kFloat32).ok());
}

class Masked : public Module {
 public:
  explicit Masked(Rng& rng) {
    layer_ = RegisterModule(
        "layer",
        MaskedLinear::Create(Tensor::FromVector({2, 2}, {1, 0, 1, 1}), rng)
            .value());
  }
  std::shared_ptr<MaskedLinear> layer_;
};

TEST(CheckpointDomains, MaskEntriesAreZeroOrOne) {
  Rng rng(1);
  Masked m(rng);
  NamedTensors ts;
  for (const auto& [name, t] : m.NamedParameters())
    ts.emplace_back(name, t.Detach());
  ts.emplace_back("buffer/layer.mask",
                  Tensor::FromVector({2, 2}, {1, 0, 2, 1}));
  const std::string path = TmpPath("mask.ckpt");
  ASSERT_TRUE(WriteTensorFile(path, ts).ok());
  ExpectBufferError(path, m,
                    "'buffer/layer.mask' holds a mask entry other than 0 or "
                    "1 (2) at entry 2");
  ts.back().second.mutable_data<double>()[2] = 0;
  ASSERT_TRUE(WriteTensorFile(path, ts).ok());
  ASSERT_TRUE(LoadCheckpoint(path, m).ok());
  EXPECT_EQ(m.layer_->mask().ToVector(), (std::vector<double>{1, 0, 0, 1}));
}

// ---- stale temporaries ----

std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') files.push_back(e->d_name);
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

// A pid that belonged to a process that has exited (and been reaped).
pid_t DeadPid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status;
  waitpid(pid, &status, 0);
  return pid;
}

// A save removes its path's temporaries whose pid is dead and whose lock is
// free, and nothing else.
TEST(CheckpointTemporaries, NextSaveRemovesStaleOnesOnly) {
  const std::string dir = TmpPath("stale");
  std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str());
  const std::string dead = absl::StrCat(DeadPid());
  const std::vector<std::string> stale = {"w.ckpt.tmp." + dead + ".Ab3xYz",
                                          "w.ckpt.tmp." + dead + ".000000"};
  const std::vector<std::string> kept = {
      "w.ckpt.tmp.1.Ab3xYz",                         // pid 1 is alive
      "w.ckpt.tmp." + dead + ".locked",              // someone holds its lock
      "other.ckpt.tmp." + dead + ".Ab3xYz",          // another checkpoint
      "w.ckpt.tmp." + dead + ".Ab3xY",               // not a temporary's name
      "w.ckpt.tmp.x" + dead + ".Ab3xYz",             // not a pid
      "w.ckpt.tmp." + dead + ".Ab3xYz.tmp.1.Ab3xYz"  // w.ckpt.tmp....'s
  };
  for (const auto& names : {stale, kept})
    for (const std::string& name : names) WriteAll(dir + "/" + name, "x");
  const int held = ::open((dir + "/" + kept[1]).c_str(), O_RDONLY);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  Rng rng(1);
  auto m_ptr = MLP::Create({2, 3, 1}, Activation::kTanh, rng).value();
  MLP& m = *m_ptr;
  ASSERT_TRUE(SaveCheckpoint(dir + "/w.ckpt", m).ok());
  ::close(held);
  std::vector<std::string> want = kept;
  want.push_back("w.ckpt");
  std::sort(want.begin(), want.end());
  EXPECT_EQ(Listing(dir), want);
}

}  // namespace
}  // namespace flowtape::nn
