// The memory estimate of cli/budget.h: MLP parameter and activation
// counts against hand counts, the byte formula, the limit check's message,
// no overflow for absurd sizes, a model copy per replica, the default limit
// (MemAvailable and cgroup limits), and the strict size-list parser.
#include "cli/budget.h"

#include <unistd.h>

#include <cmath>
#include <string>

#include "gtest/gtest.h"

namespace flowtape::cli {
namespace {

TEST(Budget, MlpCountsByHand) {
  // 2 -> 64 -> 64 -> 4: (2+1) 64 + (64+1) 64 + (64+1) 4 = 4612 parameters.
  EXPECT_EQ(MlpParameters(2, {64, 64}, 4), 4612);
  EXPECT_EQ(MlpParameters(3, {}, 5), 20);                  // one layer
  EXPECT_EQ(MlpActivations(2, {64, 64}, 4), 2 + 4 + 256);  // in, out, 2x2x64
  Footprint f = FlowFootprint(8, 2, 0, {64, 64}, 256, 1000);
  EXPECT_EQ(f.parameters, 8 * 4612);
  EXPECT_EQ(f.activations_per_example, 8 * (262 + 8));
  EXPECT_EQ(f.Bytes(), 8.0 * (4 * 8 * 4612 + 3.0 * 8 * 270 * 256 + 1000));
}

TEST(Budget, LimitAndMessage) {
  Footprint f;
  f.parameters = 1e9;  // 32e9 bytes: 29.8 GiB
  EXPECT_TRUE(CheckMemory(f, "--x=1", 4e10).ok());
  absl::Status s = CheckMemory(f, "--x=1", std::pow(2.0, 30));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().substr(0, 38),
            "--x=1: the run needs about 29.8 GiB (1");
  EXPECT_NE(s.message().find("above the memory limit of 1 GiB"),
            std::string::npos)
      << s;
  // Sizes whose product overflows int64 are doubles here: inf, refused.
  Footprint huge = FlowFootprint(1e9, 2, 0, {int64_t{1} << 62}, 1e18, 1e300);
  EXPECT_FALSE(CheckMemory(huge, "--h", 1e300).ok());
  Footprint nan;
  nan.parameters = NAN;
  EXPECT_FALSE(CheckMemory(nan, "--h", 1e300).ok());
  EXPECT_GT(MemoryLimitBytes(0), 1e8);  // the memory available
  EXPECT_EQ(MemoryLimitBytes(2), 2 * std::pow(2.0, 30));
}

TEST(Budget, ReplicasEachHoldAModelCopy) {
  Footprint f = FlowFootprint(8, 2, 0, {64, 64}, 256, 1000);
  const double one = f.Bytes();
  f.replicas = 4;  // 3 more copies of parameters, gradients, m and v
  EXPECT_EQ(f.Bytes(), one + 3 * 8.0 * 4 * f.parameters);
  f.parameters = 1e8;
  EXPECT_NE(CheckMemory(f, "--threads=4", 1e9)
                .message()
                .find("1e+08 parameters x 4 replicas"),
            std::string::npos);
}

// The default limit is what the process can get now, not the installed RAM:
// the least of MemAvailable and a cgroup limit, physical memory only when
// neither can be read.
TEST(Budget, DefaultLimitIsTheMemoryAvailable) {
  const std::string meminfo =
      "MemTotal:       16000000 kB\nMemFree:  100 kB\n"
      "MemAvailable:    2000000 kB\nBuffers: 5 kB\n";
  EXPECT_EQ(MemoryLimitFrom(meminfo, "", "", 1e12), 2048e6);
  EXPECT_EQ(MemoryLimitFrom(meminfo, "max\n", "", 1e12), 2048e6);
  EXPECT_EQ(MemoryLimitFrom(meminfo, "1073741824\n", "", 1e12), 1073741824);
  EXPECT_EQ(MemoryLimitFrom(meminfo, "", "536870912\n", 1e12), 536870912);
  EXPECT_EQ(MemoryLimitFrom("", "max\n", "", 1e12), 1e12);
  EXPECT_EQ(MemoryLimitFrom("MemAvailable: x kB\n", "", "", 1e12), 1e12);
  EXPECT_EQ(MemoryLimitFrom("", "", "", 3e9), 3e9);
  // On this machine: no more than installed memory, and (MemAvailable
  // being below MemTotal) strictly less.
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                          static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  EXPECT_LT(MemoryLimitBytes(0), physical);
}

TEST(Budget, SizeListsAreStrictPositiveIntegers) {
  EXPECT_EQ(ParseSizeList("hidden", "64,32,1").value(),
            (std::vector<int64_t>{64, 32, 1}));
  for (const char* bad : {"", "0", "-3", "+3", "1,,2", " 4", "4 ", "0x10",
                          "1e3", "99999999999999999999", "64,"}) {
    auto r = ParseSizeList("hidden", bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(r.status().message().substr(0, 20), "--hidden: bad size '")
        << bad;
  }
}

TEST(Budget, IntegerListsAreStrictAndInRange) {
  EXPECT_EQ(ParseIntegerList("euler_steps", "1,2,100000", 1, 100000).value(),
            (std::vector<int64_t>{1, 2, 100000}));
  for (const char* bad : {"", "0", "100001", "-1", "+3", "1,,2", " 4", "4 ",
                          "0x10", "1e3", "99999999999999999999", "8,"}) {
    auto r = ParseIntegerList("euler_steps", bad, 1, 100000);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--euler_steps: bad item '"),
              std::string::npos)
        << r.status();
    EXPECT_NE(r.status().message().find("in [1, 100000]"), std::string::npos);
  }
}

TEST(Budget, DecimalListsAreStrictAndInRange) {
  auto in_range = [](double v) { return v > 0 && v <= 1e6; };
  EXPECT_EQ(ParseDecimalList("scales", "0.5,1e6,2E-3", "in (0, 1e6]", in_range)
                .value(),
            (std::vector<double>{0.5, 1e6, 2e-3}));
  for (const char* bad :
       {"", "0", "-1", "1e6.5", "1000001", "inf", "nan", "0x1p4", "1e999",
        "1e-999", "1,,2", " 1", "1 ", "0.5,", "1;2"}) {
    auto r = ParseDecimalList("scales", bad, "in (0, 1e6]", in_range);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--scales: bad item '"),
              std::string::npos)
        << r.status();
    EXPECT_NE(r.status().message().find("decimals in (0, 1e6]"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace flowtape::cli
