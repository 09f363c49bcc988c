// cli/cli.h's pieces: paths resolve against BUILD_WORKING_DIRECTORY,
// MakeOutputDir creates parents and fails with the errno text, --dtype
// parses only f32 / f64, history rows fall on the logged and validation
// steps with window means and rates, and results.json carries the run's
// description.
#include "cli/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace flowtape::cli {
namespace {

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

// Runs started in the same second get folders of their own.
TEST(MakeRunDir, TakesTheFirstFreeNameAndMakesParents) {
  const std::string base = Tmp("run_dirs/deep/earth-20261207-051425");
  auto a = MakeRunDir(base), b = MakeRunDir(base), c = MakeRunDir(base);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status();
  EXPECT_EQ(*a, base);
  EXPECT_EQ(*b, base + "-2");
  EXPECT_EQ(*c, base + "-3");
  struct stat st;
  EXPECT_EQ(::stat(c->c_str(), &st), 0);
  // A parent that is a file: the errno text, no loop.
  std::ofstream(Tmp("run_file")) << "x";
  auto bad = MakeRunDir(Tmp("run_file/x"));
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "cannot create"))
      << bad.status();
}

TEST(ResolvePath, RelativeGoesToTheWorkingDirectoryAbsoluteStays) {
  setenv("BUILD_WORKING_DIRECTORY", "/home/u/proj", 1);
  EXPECT_EQ(ResolvePath("runs/a"), "/home/u/proj/runs/a");
  EXPECT_EQ(ResolvePath("/tmp/x"), "/tmp/x");
  setenv("BUILD_WORKING_DIRECTORY", "", 1);
  EXPECT_EQ(ResolvePath("runs/a"), "runs/a");
  unsetenv("BUILD_WORKING_DIRECTORY");
  EXPECT_EQ(ResolvePath("runs/a"), "runs/a");
}

TEST(MakeOutputDir, CreatesParentsAndNamesTheFailure) {
  const std::string dir = Tmp("a/b/c");
  ASSERT_TRUE(MakeOutputDir(dir).ok());
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(MakeOutputDir(dir).ok());  // exists: fine
  const std::string file = Tmp("plain_file");
  std::ofstream(file) << "x";
  absl::Status s = MakeOutputDir(file + "/sub");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "cannot create directory '" +
                                                 file +
                                                 "/sub': Not a "
                                                 "directory"))
      << s;
  s = MakeOutputDir(file);  // a file, not a directory
  EXPECT_TRUE(absl::StrContains(s.message(), "Not a directory")) << s;
  if (geteuid() != 0) {
    const std::string ro = Tmp("readonly");
    ASSERT_EQ(mkdir(ro.c_str(), 0555), 0);
    s = MakeOutputDir(ro);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "Permission denied")) << s;
  }
}

TEST(ParseDType, OnlyF32AndF64) {
  EXPECT_EQ(*ParseDType("f32"), kFloat32);
  EXPECT_EQ(*ParseDType("f64"), kFloat64);
  absl::Status s = ParseDType("float").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(),
                                "--dtype=float: must be f32 or "
                                "f64"))
      << s;
}

TEST(History, RowsOnLoggedAndValidationStepsWithWindowMeans) {
  training::TrainResult r;
  r.losses = {4, 2, 3, 1, 5};
  r.elapsed = {1, 2, 3, 4, 6};
  r.val_history = {{3, 7.5}};
  History h;
  h.AddTraining(r, 2, "m");
  // Rows at 2 (logged), 3 (validation), 4 (logged), 5 (last).
  ASSERT_EQ(h.rows().size(), 4u);
  EXPECT_EQ(h.rows()[0].step, 2);
  EXPECT_DOUBLE_EQ(h.rows()[0].train_loss, 3.0);   // mean of 4, 2
  EXPECT_DOUBLE_EQ(h.rows()[0].steps_per_s, 1.0);  // 2 steps in 2 s
  EXPECT_TRUE(std::isnan(h.rows()[0].val_loss));
  EXPECT_EQ(h.rows()[1].step, 3);
  EXPECT_DOUBLE_EQ(h.rows()[1].val_loss, 7.5);
  EXPECT_DOUBLE_EQ(h.rows()[3].steps_per_s, 0.5);  // step 5: 1 step in 2 s
  EXPECT_EQ(h.Csv(),
            "step,train_loss,val_loss,steps_per_s,run\n"
            "2,3,,1,m\n3,3,7.5,1,m\n4,1,,1,m\n5,5,,0.5,m\n");
  h.set_has_nfe(true);
  EXPECT_TRUE(absl::StartsWith(h.Csv(),
                               "step,train_loss,val_loss,steps_per_s,nfe,run\n"
                               "2,3,,1,,m\n"));
}

TEST(Experiment, ResultsDescribeTheRun) {
  Experiment ex({"demo", "usage", kFloat32}, {"demo", "--x=1"}, kFloat64, 3,
                Tmp("run"));
  ex.set_seed(42);
  ex.metrics()["nll"] = 1.5;
  ex.timings()["train_s"] = 2.0;
  EXPECT_EQ(ex.Output("m.ftm"), Tmp("run") + "/m.ftm");
  io::Json j = ex.Results(absl::InternalError("boom"));
  EXPECT_EQ(j["binary"], "demo");
  EXPECT_EQ(j["command_line"], io::Json({"demo", "--x=1"}));
  EXPECT_EQ(j["status"], "INTERNAL: boom");
  EXPECT_EQ(j["seed"], 42);
  EXPECT_EQ(j["dtype"], "f64");
  EXPECT_EQ(j["threads"], 3);
  EXPECT_EQ(j["metrics"]["nll"], 1.5);
  EXPECT_EQ(j["timings"]["train_s"], 2.0);
  EXPECT_TRUE(j["timings"]["total_s"].is_number());
  EXPECT_EQ(j["files"], io::Json({"m.ftm"}));
  for (const char* key : {"cpu_model", "cores", "compiler", "flowtape_version"})
    EXPECT_TRUE(j["machine"].contains(key)) << key;
  EXPECT_TRUE(j["flags"].contains("out_dir"));
  EXPECT_TRUE(j["flags"].contains("dtype"));
}

}  // namespace
}  // namespace flowtape::cli
