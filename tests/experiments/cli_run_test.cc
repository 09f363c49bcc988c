// The experiment binaries as a user runs them (cli/cli.h):
//   every help flag prints the usage and exits 0; an unknown flag or a
//   positional argument exits 1 naming it (every cli::Main binary,
//   tools/torch_exchange, examples/conditional_maf, benchmarks/mpi_bench);
//   mpi_bench and cnf_training_methods run in --dtype=f32 and f64 alike;
//   --threads is capped; ica checks its memory; rate_distortion refuses a
//   --model of another shape; torch_exchange guards the size of the models
//   it builds; an --out_dir that cannot be created fails
//   with the errno text before any training; a short run writes
//   results.json (required keys, dtype as the flag says, also in model.ftm)
//   and history.csv (header, one row per logged step); relative paths
//   resolve against BUILD_WORKING_DIRECTORY; ica's fits load as model files;
//   the paper binaries fill config and metrics, write history rows and one
//   checkpoint per trained model (with its metadata), and a run whose loss,
//   gradient or ODE solve fails exits 1 with results.json saying why; a
//   killed run resumes (--resume) to the uninterrupted run's results.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "gtest/gtest.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model_file.h"
#include "models/model_spec.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "tests/float32_tolerance.h"

namespace flowtape {
namespace {

struct Proc {
  int code = -1;
  std::string out, err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

// Runs the binary (a runfiles path) from directory `cwd` with `env`
// assignments prepended.
Proc Exec(const std::string& binary, const std::string& args,
          const std::string& cwd, const std::string& env = "") {
  static int n = 0;
  char here[4096];
  EXPECT_NE(getcwd(here, sizeof(here)), nullptr);
  const std::string out = Tmp(absl::StrCat("out", n)),
                    err = Tmp(absl::StrCat("err", n++));
  const std::string cmd = absl::StrCat(
      "mkdir -p '", cwd, "' && cd '", cwd, "' && ", env, " '", here, "/",
      binary, "' ", args, " >'", out, "' 2>'", err, "'");
  const int status = std::system(cmd.c_str());
  Proc p;
  p.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  p.out = Slurp(out);
  p.err = Slurp(err);
  return p;
}

const char* kBinaries[] = {"experiments/quickstart", "experiments/toy2d",
                           "experiments/ica", "benchmarks/anode_spheres"};

// Every binary built on cli::Main.
const char* kAllMainBinaries[] = {
    "experiments/quickstart",
    "experiments/toy2d",
    "experiments/ica",
    "experiments/images",
    "experiments/ood",
    "experiments/calibration",
    "experiments/invertibility",
    "experiments/compress_mnist",
    "experiments/rate_distortion",
    "benchmarks/anode_spheres",
    "benchmarks/earth",
    "benchmarks/cnf_training_methods",
    "benchmarks/rnode_vs_ffjord",
    "benchmarks/torus",
    "benchmarks/sphere_target",
    "benchmarks/snf_energies",
};

TEST(Cli, HelpPrintsUsageAndExitsZero) {
  for (const char* bin : kAllMainBinaries) {
    for (const char* flag : {"--help", "-helpfull", "-h"}) {
      Proc p = Exec(bin, flag, Tmp("help"));
      EXPECT_EQ(p.code, 0) << bin << " " << flag << ": " << p.err;
      EXPECT_TRUE(absl::StrContains(p.out, "./bazelw run")) << bin << p.out;
      EXPECT_TRUE(absl::StrContains(p.out, "--out_dir")) << bin << p.out;
      EXPECT_TRUE(absl::StrContains(p.out, "--dtype")) << bin << p.out;
    }
    // Abseil's own handling of these exits 1.
    for (const char* flag : {"--helpmatch=out_dir", "--helpon=cli",
                             "--helppackage=cli/", "--helpmatch"}) {
      Proc p = Exec(bin, flag, Tmp("help"));
      EXPECT_EQ(p.code, 0) << bin << " " << flag << ": " << p.err;
      EXPECT_TRUE(absl::StrContains(p.out, "--out_dir")) << bin << p.out;
    }
  }
  Proc p = Exec("experiments/toy2d", "--helpmatch=out_dir", Tmp("help"));
  EXPECT_TRUE(absl::StrContains(p.out, "\n  --out_dir  ")) << p.out;
  EXPECT_FALSE(absl::StrContains(p.out, "\n  --dtype  ")) << p.out;
}

TEST(Cli, EveryBinaryRefusesUnknownFlagsAndPositionalArguments) {
  for (const char* bin : kAllMainBinaries) {
    Proc p = Exec(bin, "--no_such_flag=3", Tmp("bad"));
    EXPECT_EQ(p.code, 1) << bin;
    EXPECT_TRUE(absl::StrContains(p.err, "no_such_flag")) << bin << p.err;
    p = Exec(bin, "stray_word", Tmp("bad"));
    EXPECT_EQ(p.code, 1) << bin;
    EXPECT_TRUE(
        absl::StrContains(p.err, "unexpected positional argument 'stray_word'"))
        << bin << p.err;
  }
}

// --threads and FLOWTAPE_NUM_THREADS are capped (a replica per thread).
TEST(Cli, ThreadCountsAreCapped) {
  Proc p = Exec("experiments/toy2d", "--steps=1 --threads=5000", Tmp("bad"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(p.err, "--threads=5000: must be in [0, 4096]"))
      << p.err;
  p = Exec("experiments/toy2d", "--steps=1", Tmp("bad"),
           "FLOWTAPE_NUM_THREADS=100000");
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(
      p.err, "FLOWTAPE_NUM_THREADS='100000': must be an integer in [1, 4096]"))
      << p.err;
}

// ica's --n is checked against the memory limit before any sample exists.
TEST(Cli, IcaChecksTheMemoryOfItsSamples) {
  Proc p = Exec(
      "experiments/ica",
      "--steps=1 --n=1000000 --max_memory_gb=0.01 --out_dir=" + Tmp("ica_mem"),
      Tmp("cwd"));
  EXPECT_EQ(p.code, 1) << p.out;
  EXPECT_TRUE(absl::StrContains(p.err, "--n=1000000: the run needs about"))
      << p.err;
  EXPECT_FALSE(absl::StrContains(p.out, "Amari")) << p.out;
}

// A model file of another shape (toy2d's [2]) or with a context is refused
// by its spec, before any data is read or any flow is called on images.
TEST(Cli, RateDistortionRefusesModelsOfAnotherShape) {
  struct Case {
    const char* config;
    const char* found;
  } cases[] = {
      {R"({"event": [2], "layers": 1, "hidden": [8]})",
       "the model has event [2] and context_dim 0"},
      {R"({"event": [784], "layers": 1, "hidden": [8], "context_dim": 3})",
       "the model has event [784] and context_dim 3"},
  };
  int k = 0;
  for (const Case& c : cases) {
    auto spec = models::ModelSpecFromJson(absl::StrCat(
        R"({"format": "flowtape.model", "version": 1, "family": "maf", )",
        R"("dtype": "float64", "config": )", c.config, "}"));
    ASSERT_TRUE(spec.ok()) << spec.status();
    Rng rng(1);
    auto model = models::MakeModel(spec->family, spec->config, rng);
    ASSERT_TRUE(model.ok()) << model.status();
    const std::string path = Tmp(absl::StrCat("other", k++, ".ftm"));
    ASSERT_TRUE(models::SaveModel(path, *spec, **model).ok());
    Proc p = Exec("experiments/rate_distortion",
                  "--model=" + path + " --out_dir=" + Tmp("rd"), Tmp("rd_cwd"),
                  "FLOWTAPE_DATA_DIR='" + Tmp("no_data") + "'");
    EXPECT_EQ(p.code, 1) << p.out;
    EXPECT_TRUE(absl::StrContains(
        p.err,
        absl::StrCat("rate_distortion: INVALID_ARGUMENT: --model=", path, ": ",
                     c.found, "; want event [784] or [1, 28, 28]")))
        << p.err;
  }
}

// tools/torch_exchange: help, unknown flags and words, size guards on the
// spec and on a file's metadata, paths relative to BUILD_WORKING_DIRECTORY.
TEST(Cli, TorchExchangeCommandLine) {
  const std::string tool = "tools/torch_exchange";
  for (const char* flag :
       {"--help", "-h", "--helpfull", "--helpmatch=spec", "--helpon=main"}) {
    Proc p = Exec(tool, flag, Tmp("cwd"));
    EXPECT_EQ(p.code, 0) << flag << ": " << p.err;
    EXPECT_TRUE(absl::StrContains(p.out, "torch_exchange export --spec"))
        << flag << p.out;
    EXPECT_TRUE(absl::StrContains(p.out, "--spec  export:")) << flag << p.out;
  }
  const std::string spec =
      R"('{"format": "flowtape.model", "version": 1, "family": "maf", )"
      R"("dtype": "float64", "config": {"event": [3], "layers": 1, )"
      R"("hidden": [8]}}')";
  struct Bad {
    std::string args, error;
  } bad[] = {
      {"--no_such_flag=1 export", "no_such_flag"},
      {"export stray --spec=" + spec, "unexpected positional argument 'stray'"},
      {"frob", "unknown command 'frob': want export or logprob"},
      {"", "no command: want export or logprob"},
      {"logprob --spec=" + spec, "--spec is not a flag of 'logprob'"},
      {"export --batch=b --spec=" + spec, "--batch is not a flag of 'export'"},
      // A spec that describes a 34-GiB layer is refused before building it.
      {R"(export --out=x --spec='{"format": "flowtape.model", "version": 1, )"
       R"("family": "maf", "dtype": "float64", "config": {"event": [3], )"
       R"("layers": 1, "hidden": [65536, 65536]}}')",
       "--spec: model description: config: describes a model of about"},
      {R"(export --out=x --n=100000 --spec='{"format": "flowtape.model", )"
       R"("version": 1, "family": "maf", "dtype": "float64", "config": )"
       R"({"event": [1, 64, 64], "layers": 1, "hidden": [8]}}')",
       "--n=100000: the batch would hold 409600000 values"},
  };
  for (const Bad& b : bad) {
    Proc p = Exec(tool, b.args, Tmp("cwd"));
    EXPECT_EQ(p.code, 1) << b.args;
    EXPECT_TRUE(absl::StrContains(p.err, b.error)) << b.args << ": " << p.err;
  }
  // Weights whose metadata describes a model far larger than the file.
  const std::string weights = Tmp("hostile.safetensors");
  ASSERT_TRUE(
      io::WriteSafetensors(
          weights, {{"w", Tensor::Zeros({2})}},
          {{"flowtape.model",
            R"({"format": "flowtape.model", "version": 1, "family": "maf", )"
            R"("dtype": "float64", "config": {"event": [3], "layers": 1, )"
            R"("hidden": [65536, 65536]}})"}})
          .ok());
  Proc p = Exec(tool,
                "logprob --model=" + weights + " --batch=" + weights +
                    " --out=" + Tmp("lp.safetensors"),
                Tmp("cwd"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(
      p.err, weights + ": model description: config: describes a model of"))
      << p.err;
  // Relative paths: under the directory bazel run was called from.
  const std::string wd = Tmp("exchange_wd");
  p = Exec(tool, "export --out=rel --spec=" + spec, Tmp("elsewhere"),
           "BUILD_WORKING_DIRECTORY='" + wd + "'");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(models::LoadModel(wd + "/rel/model.ftm").ok());
  p = Exec(tool,
           "logprob --model=rel/model.safetensors --batch=rel/batch.safetensors"
           " --out=rel/lp.safetensors",
           Tmp("elsewhere"), "BUILD_WORKING_DIRECTORY='" + wd + "'");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(std::ifstream(wd + "/rel/lp.safetensors").good());
}

// README's example: --help exits 0 without training; anything but one
// checkpoint path is an error (it used to train and save to "--help").
TEST(Cli, ExampleArguments) {
  Proc p = Exec("examples/conditional_maf", "--help", Tmp("example"));
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(absl::StrContains(p.out, "usage: conditional_maf")) << p.out;
  EXPECT_FALSE(absl::StrContains(p.out, "test NLL")) << p.out;
  for (const char* args : {"--bogus", "a.ckpt b.ckpt", "-x"}) {
    p = Exec("examples/conditional_maf", args, Tmp("example"));
    EXPECT_EQ(p.code, 1) << args;
    EXPECT_TRUE(absl::StrContains(p.err, "usage: conditional_maf"))
        << args << p.err;
  }
  EXPECT_FALSE(std::ifstream(Tmp("example/--help")).good());
  EXPECT_FALSE(std::ifstream(Tmp("example/--bogus")).good());
}

// A Google Benchmark main of its own must refuse flags it does not know
// (benchmark_main does; mpi_bench has its own main).
TEST(Cli, MpiBenchRefusesUnknownFlags) {
  Proc p = Exec("benchmarks/mpi_bench",
                "--benchmark_filter=no_such_case --no_such_flag", Tmp("cwd"));
  EXPECT_EQ(p.code, 1) << p.out;
  EXPECT_TRUE(absl::StrContains(p.err, "no_such_flag")) << p.err;
}

// mpi_bench --dtype: one MAF training step case on one rank in each dtype.
// The row is labelled with the dtype, so is the context, and the bytes a
// step all-reduces are the gradient, one flag per parameter tensor and the
// loss in that dtype: 8 bytes each in float64 (206751 of them: 1.654008 MB),
// exactly half in float32. Another value exits 1 naming the flag.
TEST(Cli, MpiBenchRunsInEitherDtype) {
  double megabytes[2] = {0, 0};
  for (int f32 = 0; f32 < 2; ++f32) {
    const std::string dtype = f32 ? "f32" : "f64";
    Proc p = Exec("benchmarks/mpi_bench",
                  "--dtype=" + dtype +
                      " --benchmark_filter=BM_MpiStep/glow:0 "
                      "--benchmark_min_time=0.01 --benchmark_format=json",
                  Tmp("cwd"));
    ASSERT_EQ(p.code, 0) << dtype << ": " << p.err;
    auto j = io::ParseJson(p.out, "mpi_bench output");
    ASSERT_TRUE(j.ok()) << j.status() << p.out;
    EXPECT_EQ((*j)["context"]["dtype"], dtype) << p.out;
    ASSERT_EQ((*j)["benchmarks"].size(), 1u) << p.out;
    const io::Json& row = (*j)["benchmarks"][0];
    EXPECT_EQ(row["label"], dtype) << p.out;
    EXPECT_FALSE(row.contains("error_message")) << p.out;
    megabytes[f32] = row["allreduce_MB"].get<double>();
  }
  EXPECT_NEAR(megabytes[0], 1.654008, 1e-9);
  EXPECT_NEAR(megabytes[1], megabytes[0] / 2, 1e-9);
  for (const char* bad : {"--dtype=f16", "--dtype=float16 --dtype=f32"}) {
    Proc p =
        Exec("benchmarks/mpi_bench",
             absl::StrCat(bad, " --benchmark_filter=no_such_case"), Tmp("cwd"));
    EXPECT_EQ(p.code, 1) << bad;
    EXPECT_TRUE(absl::StrContains(p.err, "must be f32 or f64")) << p.err;
  }
}

TEST(Cli, UnknownFlagsAndPositionalArgumentsFail) {
  for (const char* bin : kBinaries) {
    // --steps=1: a binary that ignored the defect would finish quickly.
    Proc p = Exec(bin, "--steps=1 --no_such_flag=3", Tmp("bad"));
    EXPECT_EQ(p.code, 1) << bin;
    EXPECT_TRUE(absl::StrContains(p.err, "no_such_flag")) << bin << p.err;
    p = Exec(bin, "--steps=1 stray_word", Tmp("bad"));
    EXPECT_EQ(p.code, 1) << bin;
    EXPECT_TRUE(
        absl::StrContains(p.err, "unexpected positional argument 'stray_word'"))
        << bin << p.err;
  }
  Proc p = Exec("experiments/toy2d", "--dtype=f16", Tmp("bad"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(p.err, "--dtype=f16: must be f32 or f64"))
      << p.err;
}

TEST(Cli, UnusableOutDirFailsBeforeTraining) {
  std::ofstream(Tmp("a_file")) << "x";
  for (const char* bin : kBinaries) {
    Proc p = Exec(bin, absl::StrCat("--steps=1 --out_dir=", Tmp("a_file/run")),
                  Tmp("outdir"));
    EXPECT_EQ(p.code, 1) << bin;
    EXPECT_TRUE(absl::StrContains(
        p.err,
        "cannot create directory '" + Tmp("a_file/run") + "': Not a directory"))
        << bin << p.err;
    // Nothing ran: no progress lines, no results.
    EXPECT_FALSE(absl::StrContains(p.out + p.err, "step")) << bin << p.out;
  }
}

// history.csv as rows of fields (header first).
std::vector<std::vector<std::string>> Csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line :
       absl::StrSplit(Slurp(path), '\n', absl::SkipEmpty()))
    rows.push_back(absl::StrSplit(line, ','));
  return rows;
}

io::Json Results(const std::string& dir) {
  auto j = io::ParseJson(Slurp(dir + "/results.json"), dir + "/results.json");
  EXPECT_TRUE(j.ok()) << j.status();
  if (!j.ok()) return io::Json::object();
  for (const char* key :
       {"binary", "command_line", "status", "flags", "seed", "dtype", "threads",
        "out_dir", "started", "machine", "metrics", "timings"})
    EXPECT_TRUE(j->contains(key)) << dir << ": no " << key;
  for (const char* key : {"cpu_model", "cores", "compiler", "flowtape_version"})
    EXPECT_TRUE((*j)["machine"].contains(key)) << dir << ": no " << key;
  return *j;
}

// toy2d trains cfm by flow matching (config "objective"), the other flows
// by maximum likelihood, and scores both by the exact test NLL.
TEST(Cli, Toy2dTrainsCfmByFlowMatching) {
  for (const char* flow : {"cfm", "realnvp"}) {
    const std::string dir = Tmp(absl::StrCat("toy2d_", flow));
    Proc p = Exec("experiments/toy2d",
                  absl::StrCat("--flow=", flow,
                               " --data=moons --steps=30 --n_train=2000 "
                               "--hidden=16 --out_dir=",
                               dir),
                  Tmp("cwd"));
    ASSERT_EQ(p.code, 0) << p.err;
    io::Json j = Results(dir);
    EXPECT_EQ(j["config"]["objective"], std::string(flow) == "cfm"
                                            ? "flow_matching"
                                            : "maximum_likelihood");
    ASSERT_TRUE(j["metrics"]["test_nll"].is_number()) << flow;
    const double nll = j["metrics"]["test_nll"];
    EXPECT_TRUE(std::isfinite(nll) && nll > 1.0 && nll < 10.0) << flow << nll;
  }
}

TEST(Cli, ShortRunWritesResultsHistoryAndModel) {
  for (const char* dtype : {"f32", "f64"}) {
    const std::string dir = Tmp(absl::StrCat("quick_", dtype));
    Proc p =
        Exec("experiments/quickstart",
             absl::StrCat("--steps=20 --dtype=", dtype, " --out_dir=", dir),
             Tmp("cwd"));
    ASSERT_EQ(p.code, 0) << p.err;
    io::Json j = Results(dir);
    EXPECT_EQ(j["status"], "ok");
    EXPECT_EQ(j["dtype"], dtype);
    EXPECT_EQ(j["binary"], "quickstart");
    EXPECT_EQ(j["flags"]["steps"], "20");
    EXPECT_TRUE(j["metrics"]["test_nll"].is_number());
    auto spec = models::ReadModelSpec(dir + "/model.ftm");
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->dtype, std::string(dtype) == "f32" ? kFloat32 : kFloat64);
    // 20 steps, validation every 2, log every 4: rows at 2, 4, ..., 20.
    auto rows = Csv(dir + "/history.csv");
    ASSERT_EQ(rows.size(), 11u);
    EXPECT_EQ(rows[0],
              (std::vector<std::string>{"step", "train_loss", "val_loss",
                                        "steps_per_s", "run"}));
    for (size_t i = 1; i < rows.size(); ++i) {
      ASSERT_EQ(rows[i].size(), 5u);
      EXPECT_EQ(rows[i][0], absl::StrCat(2 * i));
      EXPECT_FALSE(rows[i][1].empty());
      EXPECT_FALSE(rows[i][2].empty());
    }
  }
  // An ODE binary: the nfe column, its default dtype f64 overridden.
  const std::string dir = Tmp("anode");
  Proc p = Exec("benchmarks/anode_spheres",
                "--steps=60 --train_size=64 --dtype=f32 --out_dir=" + dir,
                Tmp("cwd"));
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(Results(dir)["dtype"], "f32");
  EXPECT_EQ(Results(dir)["config"]["steps"], 60);
  auto rows = Csv(dir + "/history.csv");
  ASSERT_EQ(rows.size(), 5u);  // per model: steps 50 and 60
  EXPECT_EQ(rows[0], (std::vector<std::string>{"step", "train_loss", "val_loss",
                                               "steps_per_s", "nfe", "run"}));
  EXPECT_EQ(rows[2][0], "60");
  EXPECT_EQ(rows[4][5], "anode");
}

// Runs toy2d with `args` into a, the same killed with SIGKILL once its
// first checkpoint exists (into b: mid-run, the resumed run must not find
// it ended), and resumed from b into c; the results and history of c are
// a's.
void KillAndResume(const std::string& args, const std::string& name) {
  const std::string a = Tmp(name + "_a"), b = Tmp(name + "_b"),
                    c = Tmp(name + "_c");
  EXPECT_EQ(
      Exec("experiments/toy2d", args + " --out_dir=" + a, Tmp("cwd")).code, 0);
  char here[4096];
  EXPECT_NE(getcwd(here, sizeof(here)), nullptr);
  const std::string kill =
      absl::StrCat("'", here, "/experiments/toy2d' ", args, " --out_dir=", b,
                   " >/dev/null 2>&1 & pid=$!; for i in $(seq 3000); do [ -f ",
                   b, "/train-1.ckpt ] && break; sleep 0.02; done; ",
                   "kill -9 $pid; wait $pid; exit 0");
  EXPECT_EQ(std::system(kill.c_str()), 0);
  EXPECT_TRUE(std::ifstream(b + "/train-1.ckpt").good());
  Proc p = Exec("experiments/toy2d",
                args + " --out_dir=" + c + " --resume=" + b, Tmp("cwd"));
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(absl::StrContains(p.out + p.err, "resumed from")) << p.err;
  EXPECT_FALSE(absl::StrContains(p.out + p.err, "the run had ended")) << p.err;
  io::Json ja = Results(a), jc = Results(c);
  for (const char* key : {"test_nll", "best_val_nll", "steps"})
    EXPECT_EQ(ja["metrics"][key], jc["metrics"][key]) << key;
  auto rows_a = Csv(a + "/history.csv"), rows_c = Csv(c + "/history.csv");
  EXPECT_EQ(rows_a.size(), rows_c.size());
  for (size_t i = 0; i < std::min(rows_a.size(), rows_c.size()); ++i)
    for (int k : {0, 1, 2, 4}) EXPECT_EQ(rows_a[i][k], rows_c[i][k]) << i;
}

// --checkpoint_every / --resume: a run killed with SIGKILL after its first
// checkpoint and rerun with --resume=<its out_dir> ends with the results
// and history of the uninterrupted run, bit for bit (stochastic losses: the
// resampled base draws normaliser samples every step; flow matching draws
// x0 and t). A changed seed, reverse KL, a missing directory and a negative
// period are errors.
TEST(Cli, KilledRunResumesToTheUninterruptedResults) {
  const std::string args =
      "--flow=realnvp --base=resampled --data=moons --steps=3000 "
      "--n_train=2000 --hidden=16 --layers=4 --checkpoint_every=25";
  KillAndResume(args, "resume");
  // Flow matching: the EMA and the loss's random stream resume too.
  KillAndResume(
      "--flow=cfm --data=moons --steps=10000 --n_train=2000 --hidden=16 "
      "--checkpoint_every=25",
      "resume_cfm");

  Proc p = Exec("experiments/toy2d",
                args + " --seed=3 --out_dir=" + Tmp("resume_d") +
                    " --resume=" + Tmp("resume_a"),
                Tmp("cwd"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(p.err, "seed 0 there, 3 here")) << p.err;
  p = Exec("experiments/toy2d",
           "--flow=planar --energy=u1 --steps=5 --checkpoint_every=5 "
           "--out_dir=" +
               Tmp("resume_e"),
           Tmp("cwd"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(p.err, "reverse-KL training")) << p.err;
  p = Exec("experiments/toy2d", "--resume=" + Tmp("no_such_run"), Tmp("cwd"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(p.err, "No such file")) << p.err;
  p = Exec("experiments/toy2d", "--checkpoint_every=-1", Tmp("cwd"));
  EXPECT_EQ(p.code, 1);
  EXPECT_TRUE(absl::StrContains(p.err, "--checkpoint_every=-1: must be >= 0"))
      << p.err;
}

// ica saves both fits as catalogue model files that LoadModel rebuilds.
TEST(Cli, IcaSavesModelFilesThatLoad) {
  const std::string dir = Tmp("ica_models");
  Proc p =
      Exec("experiments/ica", "--steps=5 --n=100 --out_dir=" + dir, Tmp("cwd"));
  ASSERT_EQ(p.code, 0) << p.err;
  io::Json j = Results(dir);
  for (const std::string run : {"infomax", "ifa"}) {
    auto model = models::LoadModel(dir + "/" + run + ".ftm");
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ((*model)->base()->name(),
              run == "ifa" ? "factorized_mixture" : "logistic");
    EXPECT_EQ((*model)->dtype(), kFloat32);  // ica's default --dtype
    auto spec = models::ReadModelSpec(dir + "/" + run + ".ftm");
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(j["config"]["models"][run]["family"], "ica");
    EXPECT_EQ(models::ModelSpecToJson(*spec),
              j["config"]["models"][run].dump());
  }
}

struct PaperRun {
  const char* binary;
  const char* args;
  std::vector<std::string> models;  // checkpoint files written
  const char* meta;                 // their metadata key
};

// Tiny runs of the paper binaries: status ok, the config and metrics
// filled, history rows for every run, and each trained model saved as a
// checkpoint whose metadata describes it.
TEST(Cli, PaperBinariesWriteConfigMetricsHistoryAndModels) {
  const PaperRun runs[] = {
      {"benchmarks/anode_spheres",
       "--steps=3 --train_size=16 --batch=8",
       {"node.ckpt", "anode.ckpt"},
       "neural_ode"},
      {"benchmarks/rnode_vs_ffjord",
       "--steps=3 --batch=16 --test_size=20 --models=ffjord,rnode",
       {"ffjord.ckpt", "rnode.ckpt"},
       "cnf"},
      {"benchmarks/cnf_training_methods",
       "--data=8gaussians --methods=ffjord,cfm --steps=4 --eval_every=2 "
       "--test_size=20 --batch=16 --sample_tols=1e-3 --euler_steps=1",
       {"8gaussians_ffjord.ckpt", "8gaussians_cfm.ckpt"},
       "cnf_field"},
      {"benchmarks/snf_energies",
       "--steps=3 --batch=16 --eval=50 --energies=u1 --models=realnvp,snf_mh",
       {"u1_realnvp.ckpt", "u1_snf_mh.ckpt"},
       "snf"},
      {"benchmarks/torus",
       "--seeds=1 --steps=2 --eval_samples=50 --targets=correlated "
       "--models=ar_mobius",
       {"correlated_ar_mobius_seed0.ckpt"},
       "torus_flow"},
      {"benchmarks/sphere_target",
       "--seeds=1 --steps=2 --eval_samples=50 --models=mobius --bins=4 "
       "--components=2 --hidden=4",
       {"mobius_seed0.ckpt"},
       "sphere_flow"},
  };
  int n = 0;
  for (const PaperRun& run : runs) {
    const std::string dir = Tmp(absl::StrCat("paper", n++));
    Proc p = Exec(run.binary, absl::StrCat(run.args, " --out_dir=", dir),
                  Tmp("cwd"));
    ASSERT_EQ(p.code, 0) << run.binary << ": " << p.err;
    io::Json j = Results(dir);
    EXPECT_EQ(j["status"], "ok") << run.binary;
    EXPECT_TRUE(j["config"].is_object() && !j["config"].empty())
        << run.binary << ": " << j["config"].dump();
    EXPECT_TRUE(j["metrics"].is_object() && !j["metrics"].empty())
        << run.binary << ": " << j["metrics"].dump();
    auto rows = Csv(dir + "/history.csv");
    ASSERT_GE(rows.size(), 2u) << run.binary;
    for (size_t i = 1; i < rows.size(); ++i) {
      ASSERT_EQ(rows[i].size(), rows[0].size()) << run.binary;
      EXPECT_FALSE(rows[i][1].empty()) << run.binary;  // train_loss
    }
    std::vector<std::string> labels;  // every model has rows
    for (size_t i = 1; i < rows.size(); ++i)
      if (labels.empty() || labels.back() != rows[i].back())
        labels.push_back(rows[i].back());
    EXPECT_EQ(labels.size(), run.models.size()) << run.binary;
    for (const std::string& file : run.models) {
      nn::Metadata meta;
      auto tensors = nn::ReadTensorFile(dir + "/" + file, &meta);
      ASSERT_TRUE(tensors.ok())
          << run.binary << " " << file << ": " << tensors.status();
      EXPECT_FALSE(tensors->empty()) << file;
      ASSERT_EQ(meta.count(run.meta), 1u) << file;
      auto m = io::ParseJson(meta[run.meta], file);
      ASSERT_TRUE(m.ok()) << m.status();
      EXPECT_EQ((*m)["dtype"], "f64") << file;
    }
  }
}

// A learning rate of 1e30 makes the first update explode: the next step's
// loss, gradient or ODE solve is not finite / fails, and the run exits 1
// naming the model and the step, with results.json recording the error
// (before, the loops broke out or scored NaN and exited 0).
TEST(Cli, DivergedOdeRunsExitNonZero) {
  const std::pair<const char*, const char*> runs[] = {
      {"benchmarks/anode_spheres",
       "--steps=20 --train_size=16 --batch=8 --lr=1e30"},
      {"benchmarks/rnode_vs_ffjord",
       "--steps=20 --batch=16 --test_size=20 --models=ffjord --lr=1e30"},
      {"benchmarks/cnf_training_methods",
       "--data=8gaussians --methods=ffjord --steps=20 --eval_every=2 "
       "--test_size=20 --batch=16 --sample_tols=1e-3 --euler_steps=1 "
       "--lr=1e30"},
      {"benchmarks/cnf_training_methods",
       "--data=8gaussians --methods=cfm --steps=20 --eval_every=2 "
       "--test_size=20 --batch=16 --sample_tols=1e-3 --euler_steps=1 "
       "--fm_lr=1e30 --fm_ema_decay=0 --fm_warmup=0"},
  };
  int n = 0;
  for (const auto& [binary, args] : runs) {
    const std::string dir = Tmp(absl::StrCat("diverged", n++));
    Proc p = Exec(binary, absl::StrCat(args, " --out_dir=", dir), Tmp("cwd"));
    EXPECT_EQ(p.code, 1) << binary << " " << args << ": " << p.out;
    EXPECT_TRUE(absl::StrContains(p.err, "step")) << binary << ": " << p.err;
    io::Json j = Results(dir);
    EXPECT_NE(j["status"], "ok") << binary;
    EXPECT_TRUE(absl::StrContains(j["status"].get<std::string>(), "step"))
        << binary << ": " << j["status"].dump();
  }
}

// cnf_training_methods with --dtype=f32: every method (FFJORD, RNODE, CFM,
// OT-CFM; the VP path and the Sinkhorn coupling) trains and is scored in
// float32, the results and checkpoints say f32, and the metrics are finite
// and agree with the float64 run from the same (rounded) initial weights:
// test NLL (every evaluation), Euler errors and straightness within
// Float32Tol(2) = 2^10 eps sqrt(2) ~ 1.7e-4 relative to 1 + |f64|
// (tests/float32_tolerance.h, D = 2; 4 Adam steps, each through float32
// solves at rtol = atol = 1e-5 that agree with float64's to rounding,
// ode/solver.h; measured: 3.3e-6 at most), NFE counts within one dopri5 step
// (6 evaluations) of float64's at the tolerances both dtypes share.
TEST(Cli, CnfTrainingMethodsRunsInFloat32) {
  const std::string common =
      "--data=8gaussians --steps=4 --eval_every=2 --test_size=20 --batch=16 "
      "--otcfm_batch=16 --sample_tols=1e-3,1e-5 --euler_steps=1,4";
  const char* variants[] = {"--methods=ffjord,rnode,cfm,otcfm",
                            "--methods=cfm,otcfm --fm_path=vp "
                            "--fm_sigma_min=0.01 --coupling=sinkhorn"};
  int n = 0;
  for (const char* variant : variants) {
    io::Json by_dtype[2];
    for (int f32 = 0; f32 < 2; ++f32) {
      const std::string dir = Tmp(absl::StrCat("cnf_dtype", n++));
      Proc p = Exec("benchmarks/cnf_training_methods",
                    absl::StrCat(common, " ", variant,
                                 f32 ? " --dtype=f32" : " --dtype=f64",
                                 " --out_dir=", dir),
                    Tmp("cwd"));
      ASSERT_EQ(p.code, 0) << variant << " f32=" << f32 << ": " << p.err;
      by_dtype[f32] = Results(dir);
      EXPECT_EQ(by_dtype[f32]["status"], "ok") << variant;
      EXPECT_EQ(by_dtype[f32]["dtype"], f32 ? "f32" : "f64") << variant;
      EXPECT_EQ(by_dtype[f32]["config"]["reference_tol"], f32 ? 1e-6 : 1e-9);
      for (const auto& [run, m] : by_dtype[f32]["metrics"].items()) {
        const std::string file =
            dir + "/" + absl::StrReplaceAll(run, {{"/", "_"}}) + ".ckpt";
        nn::Metadata meta;
        auto tensors = nn::ReadTensorFile(file, &meta);
        ASSERT_TRUE(tensors.ok()) << file << ": " << tensors.status();
        ASSERT_FALSE(tensors->empty()) << file;
        for (const auto& [name, t] : *tensors)
          EXPECT_EQ(t.dtype(), f32 ? kFloat32 : kFloat64) << file << name;
        auto cnf_field = io::ParseJson(meta["cnf_field"], file);
        ASSERT_TRUE(cnf_field.ok()) << cnf_field.status();
        EXPECT_EQ((*cnf_field)["dtype"], f32 ? "f32" : "f64") << file;
      }
    }
    const io::Json& m64 = by_dtype[0]["metrics"];
    const io::Json& m32 = by_dtype[1]["metrics"];
    ASSERT_EQ(m32.size(), m64.size()) << variant;
    ASSERT_GE(m32.size(), 2u) << variant;
    auto close = [&](const std::string& what, const io::Json& a,
                     const io::Json& b) {
      ASSERT_TRUE(a.is_number() && b.is_number()) << what;
      const double x = a.get<double>(), y = b.get<double>();
      EXPECT_TRUE(std::isfinite(x)) << what << " f32 " << x;
      EXPECT_LE(testing::Float32Err(x, y), testing::Float32Tol(2))
          << what << ": f32 " << x << " f64 " << y;
    };
    auto nfe_close = [&](const std::string& what, const io::Json& a,
                         const io::Json& b) {
      ASSERT_TRUE(a.is_number() && b.is_number()) << what;
      EXPECT_LE(std::abs(a.get<double>() - b.get<double>()), 6.0)
          << what << ": f32 " << a << " f64 " << b;
    };
    for (const auto& [run, r64] : m64.items()) {
      ASSERT_TRUE(m32.contains(run)) << run;
      const io::Json& r32 = m32[run];
      close(run + " test_nll", r32["test_nll"], r64["test_nll"]);
      close(run + " straightness", r32["straightness"], r64["straightness"]);
      ASSERT_EQ(r32["euler_error"].size(), 2u) << run;
      ASSERT_EQ(r64["euler_error"].size(), 2u) << run;
      for (int i = 0; i < 2; ++i)
        close(run + " euler_error", r32["euler_error"][i],
              r64["euler_error"][i]);
      const auto& c32 = r32["curve_step_wall_cpu_nll"];
      const auto& c64 = r64["curve_step_wall_cpu_nll"];
      ASSERT_EQ(c32.size(), c64.size()) << run;
      for (size_t i = 0; i < c32.size(); ++i)
        close(run + " curve NLL", c32[i][3], c64[i][3]);
      nfe_close(run + " nfe_per_step", r32["nfe_per_step"],
                r64["nfe_per_step"]);
      nfe_close(run + " sampling_nfe", r32["sampling_nfe"],
                r64["sampling_nfe"]);
      ASSERT_EQ(r32["x_only_sampling_nfe"].size(), 2u) << run;
      for (int i = 0; i < 2; ++i)
        nfe_close(run + " x-only NFE", r32["x_only_sampling_nfe"][i],
                  r64["x_only_sampling_nfe"][i]);
    }
  }
}

TEST(Cli, RelativePathsResolveAgainstBuildWorkingDirectory) {
  const std::string wd = Tmp("user_dir");
  Proc p = Exec("experiments/ica", "--steps=5 --n=100 --out_dir=rel/out",
                Tmp("elsewhere"), "BUILD_WORKING_DIRECTORY='" + wd + "'");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(Results(wd + "/rel/out")["out_dir"], wd + "/rel/out");
  EXPECT_FALSE(std::ifstream(Tmp("elsewhere/rel/out/results.json")).good());
  // The default: runs/<binary>-<time> under that directory.
  p = Exec("experiments/ica", "--steps=5 --n=100", Tmp("elsewhere"),
           "BUILD_WORKING_DIRECTORY='" + wd + "'");
  ASSERT_EQ(p.code, 0) << p.err;
  const std::string prefix = "ica: output in ";
  size_t at = p.out.find(prefix);
  ASSERT_NE(at, std::string::npos) << p.out;
  at += prefix.size();
  const std::string dir = p.out.substr(at, p.out.find('\n', at) - at);
  EXPECT_TRUE(absl::StartsWith(dir, wd + "/runs/ica-")) << dir;
  EXPECT_EQ(Results(dir)["binary"], "ica") << dir;
}

}  // namespace
}  // namespace flowtape
