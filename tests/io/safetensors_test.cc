// safetensors: round trips, a file written by hand from the format's
// description, and hostile files (each refused with a Status naming the
// problem).
#include "io/safetensors.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace flowtape::io {
namespace {

std::string U64(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  return s;
}

std::string F64(std::vector<double> values) {
  std::string s;
  for (double v : values) s.append(reinterpret_cast<const char*>(&v), 8);
  return s;
}

// A file with header `header` and data buffer `data`.
std::string File(const std::string& header, const std::string& data) {
  return U64(header.size()) + header + data;
}

TEST(Safetensors, RoundTripKeepsNamesDtypesShapesBitsAndMetadata) {
  Rng rng(1);
  nn::NamedTensors ts = {{"w", Tensor::Randn({3, 2}, rng)},
                         {"f", Tensor::Randn({5}, rng, kFloat32)},
                         {"scalar", Tensor::Scalar(-0.0)},
                         {"empty", Tensor::Zeros({0, 4})},
                         {"img", Tensor::Randn({1, 2, 3, 2}, rng)}};
  ts[0].second.mutable_data<double>()[1] = std::nan("");
  ts[0].second.mutable_data<double>()[2] = 1e-310;
  const Metadata meta = {{"format", "pt"}, {"note", "\xc3\xa9"}};
  const std::string bytes = EncodeSafetensors(ts, meta);
  const uint64_t n = static_cast<unsigned char>(bytes[0]) |
                     static_cast<unsigned char>(bytes[1]) << 8;
  EXPECT_EQ(n % 8, 0u);  // data 8-byte aligned
  Metadata back_meta;
  auto back = DecodeSafetensors(bytes, "mem", &back_meta);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back_meta, meta);
  ASSERT_EQ(back->size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor &a = ts[i].second, &b = (*back)[i].second;
    EXPECT_EQ((*back)[i].first, ts[i].first);  // data order = given order
    EXPECT_EQ(b.dtype(), a.dtype());
    EXPECT_EQ(b.shape(), a.shape());
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(),
                          a.numel() * DTypeSize(a.dtype())),
              0);
  }
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/t.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, ts, meta).ok());
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), ts.size());
}

// Written by hand from the format's description (header unpadded, tensors
// listed out of data order, integers in the data as F64).
TEST(Safetensors, ReadsAFileWrittenByHand) {
  const std::string header =
      R"({"b":{"dtype":"F64","shape":[],"data_offsets":[16,24]},)"
      R"("a":{"data_offsets":[0,16],"shape":[1,2],"dtype":"F64"},)"
      R"("__metadata__":{"k":"v"}})";
  Metadata meta;
  auto t = DecodeSafetensors(File(header, F64({1.5, -2, 7})), "hand", &meta);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].first, "a");
  EXPECT_EQ((*t)[0].second.shape(), Shape({1, 2}));
  EXPECT_EQ((*t)[0].second.ToVector(), (std::vector<double>{1.5, -2}));
  EXPECT_EQ((*t)[1].first, "b");
  EXPECT_EQ((*t)[1].second.item(), 7);
  EXPECT_EQ(meta.at("k"), "v");
  float f[2] = {0.25f, -3.0f};
  auto g = DecodeSafetensors(
      File(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
           std::string(reinterpret_cast<const char*>(f), 8)),
      "hand");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)[0].second.dtype(), kFloat32);
  EXPECT_EQ((*g)[0].second.ToVector(), (std::vector<double>{0.25, -3}));
}

void ExpectRefused(const std::string& bytes, const std::string& needle) {
  auto t = DecodeSafetensors(bytes, "hostile");
  ASSERT_FALSE(t.ok()) << needle;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message().rfind("hostile: ", 0), 0u) << t.status();
  EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status();
}

std::string One(const std::string& entry, const std::string& data) {
  return File("{\"a\":" + entry + "}", data);
}

TEST(Safetensors, HostileFilesAreRefusedByName) {
  const std::string d16 = F64({1, 2});
  ExpectRefused("", "0 bytes, shorter than the 8-byte header length");
  ExpectRefused("1234567", "7 bytes, shorter");
  ExpectRefused(U64(1) + "{", "header length 1 outside [2, 100000000]");
  ExpectRefused(U64(uint64_t{1} << 63) + "{}",
                "header length 9223372036854775808 outside");
  ExpectRefused(U64(50) + "{}", "header length 50 exceeds the 2 bytes");
  ExpectRefused(File("{\"a\":", ""), "header: not valid JSON");
  ExpectRefused(File("{} x", ""), "header: not valid JSON");
  ExpectRefused(File("[]", ""), "header is a JSON array, not an object");
  ExpectRefused(File("{\"a\":{}, \"a\":{}}", ""), "duplicate key \"a\"");
  ExpectRefused(File("{\"\\u00\xff\":1}", ""), "not valid JSON");
  ExpectRefused(File("{\"a\xff\":1}", ""), "not valid JSON");  // bad UTF-8
  ExpectRefused(File("{\"__metadata__\":" + std::string(100, '[') +
                         std::string(100, ']') + "}",
                     ""),
                "nesting deeper than 64");
  ExpectRefused(File(R"({"__metadata__":{"k":1}})", ""),
                "__metadata__ 'k' is a number, not a string");
  ExpectRefused(File(R"({"__metadata__":[]})", ""),
                "__metadata__ is not an object");
  ExpectRefused(
      File(R"({"":{"dtype":"F64","shape":[],"data_offsets":[0,8]}})", F64({1})),
      "a tensor with an empty name");
  ExpectRefused(One(R"({"dtype":"F64","shape":[2]})", d16),
                "'a': want an object of exactly dtype, shape and "
                "data_offsets");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[2],"data_offsets":[0,16],"x":0})", d16),
      "'a': want an object of exactly");
  for (const std::string dtype : {"F16", "BF16", "I64", "U8", "BOOL"})
    ExpectRefused(
        One(R"({"dtype":")" + dtype + R"(","shape":[2],"data_offsets":[0,16]})",
            d16),
        "'a': dtype \"" + dtype + "\" is not supported");
  ExpectRefused(One(R"({"dtype":5,"shape":[2],"data_offsets":[0,16]})", d16),
                "'a': dtype is not a string");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[1,1,1,1,2],"data_offsets":[0,16]})", d16),
      "'a': shape is not an array of at most 4 integers");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[-2],"data_offsets":[0,16]})", d16),
      "'a': a dim is not an integer >= 0");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[2.0],"data_offsets":[0,16]})", d16),
      "'a': a dim is not an integer >= 0");
  ExpectRefused(One(R"({"dtype":"F64","shape":[0,1125899906842625],)"
                    R"("data_offsets":[0,0]})",
                    ""),
                "'a': shape has more than 2^50 elements");
  ExpectRefused(One(R"({"dtype":"F64","shape":[33554432,33554432,2],)"
                    R"("data_offsets":[0,16]})",
                    d16),
                "'a': shape has more than 2^50 elements");
  ExpectRefused(One(R"({"dtype":"F64","shape":[2],"data_offsets":[0]})", d16),
                "'a': data_offsets is not two integers >= 0");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[2],"data_offsets":[-8,8]})", d16),
      "'a': data_offsets is not two integers >= 0");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[2],"data_offsets":[16,0]})", d16),
      "'a': data_offsets [16, 0] outside the 16-byte data buffer");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[2],"data_offsets":[0,18446744073709551615]})",
          d16),
      "'a': data_offsets [0, 18446744073709551615] outside");
  ExpectRefused(
      One(R"({"dtype":"F64","shape":[3],"data_offsets":[0,16]})", d16),
      "'a': data_offsets span 16 bytes, the shape needs 24");
  ExpectRefused(
      One(R"({"dtype":"F32","shape":[2],"data_offsets":[0,16]})", d16),
      "'a': data_offsets span 16 bytes, the shape needs 8");
  // The tensors must tile the buffer.
  const std::string two =
      R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F64","shape":[1],"data_offsets":[OFF]}})";
  auto with = [&](const std::string& off, const std::string& data) {
    std::string h = two;
    h.replace(h.find("OFF"), 3, off);
    return File(h, data);
  };
  EXPECT_TRUE(DecodeSafetensors(with("16,24", F64({1, 2, 3})), "ok").ok());
  ExpectRefused(with("8,16", F64({1, 2})), "'b' overlaps 'a' in the data");
  ExpectRefused(with("24,32", F64({1, 2, 3, 4})),
                "bytes [16, 24) of the data buffer belong to no tensor");
  ExpectRefused(with("16,24", F64({1, 2, 3, 4})),
                "8 trailing bytes after the last tensor");
  ExpectRefused(File("{}", "x"), "1 trailing bytes after the last tensor");
}

}  // namespace
}  // namespace flowtape::io
