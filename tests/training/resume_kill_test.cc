// A TrainNll process that checkpoints every few steps is killed with SIGKILL
// at random moments (spread over the run's progress), again and again; every
// new process is started with the same options plus resume_from =
// checkpoint_path (resume_missing_ok: the first ones may die before any
// checkpoint). The process that finally runs to the end returns the parameters,
// buffers, optimizer state and the whole loss and validation history of an
// uninterrupted run, bit for bit (float64, a stochastic nll, early-stopping
// state and the NaN guard's snapshot carried by the checkpoints). The children
// are forked before the test process trains anything (no thread pool to
// inherit).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "gtest/gtest.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tests/training/rows.h"
#include "training/train.h"
#include "training/train_state.h"

namespace flowtape::training {
namespace {

TrainData Dataset() {
  TrainData d;
  d.train = fixtures::Rows(2048, 1);
  d.val = fixtures::Rows(200, 2);
  return d;
}

TrainOptions Options(const std::string& ckpt) {
  TrainOptions o;
  o.batch_size = 256;
  o.max_steps = 300;
  o.eval_every = 10;
  o.eval_batch_size = 100;
  o.log_every = 0;
  o.seed = 3;
  o.guard_every = 7;
  o.checkpoint_every = 3;
  o.checkpoint_path = ckpt;
  return o;
}

// Trains (resuming from `ckpt` when it is there) and writes the final
// state and history to `out` as exact hex floats, one per line.
absl::Status TrainAndWrite(const std::string& ckpt, const std::string& out,
                           bool resume) {
  Rng init(11);
  models::ModelConfig c;
  c.event = Shape{4};
  c.layers = 3;
  c.hidden = {32, 32};
  FT_ASSIGN_OR_RETURN(auto m, models::MakeModel("maf", c, init));
  nn::AdamOptions adam_options;
  adam_options.lr = 1e-2;
  FT_ASSIGN_OR_RETURN(auto opt, nn::Adam::Create(*m, adam_options));
  NllFn nll = [&m](const Tensor& x, const Tensor& ctx, Rng& rng) {
    return m->Nll(x + 0.02 * (Tensor::Rand(x.shape(), rng) - 0.5), ctx, &rng);
  };
  TrainOptions o = Options(ckpt);
  if (resume) {
    o.resume_from = ckpt;
    o.resume_missing_ok = true;
  }
  FT_ASSIGN_OR_RETURN(TrainResult r, TrainNll(*m, nll, *opt, Dataset(), o));
  std::FILE* f = std::fopen(out.c_str(), "w");
  if (f == nullptr) return absl::InternalError("cannot write " + out);
  auto put = [f](double v) { std::fprintf(f, "%a\n", v); };
  for (const Tensor& p : m->Parameters())
    for (double v : p.ToVector()) put(v);
  for (const auto& [name, t] : opt->NamedState())
    for (double v : t.ToVector()) put(v);
  for (double v : r.losses) put(v);
  for (const auto& [step, v] : r.val_history) {
    put(static_cast<double>(step));
    put(v);
  }
  std::fprintf(f, "steps %lld best %lld %s\n", static_cast<long long>(r.steps),
               static_cast<long long>(r.best_step), r.message.c_str());
  std::fclose(f);
  return absl::OkStatus();
}

// The step of the checkpoint's training state; -1 without a checkpoint.
int64_t CheckpointStep(const std::string& ckpt) {
  if (::access(ckpt.c_str(), F_OK) != 0) return -1;
  nn::Metadata meta;
  absl::StatusOr<nn::NamedTensors> file = nn::ReadTensorFile(ckpt, &meta);
  EXPECT_TRUE(file.ok()) << file.status();
  absl::StatusOr<TrainState> state = DecodeState(meta[kTrainStateKey]);
  EXPECT_TRUE(state.ok()) << state.status();
  return file.ok() && state.ok() ? state->step : -1;
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(line);
  return lines;
}

TEST(ResumeKill, SigkillAtRandomMomentsEndsAsTheUninterruptedRun) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp");
  const std::string ckpt = dir + "/kill.ckpt", out = dir + "/kill.out";
  std::remove(ckpt.c_str());
  std::remove(out.c_str());
  Rng timing(7);
  constexpr int kKills = 12;
  int killed = 0;
  int64_t step = -1;
  std::vector<int64_t> starts;  // the checkpoint step each child resumed
  for (int i = 0; i <= kKills; ++i) {
    starts.push_back(step);
    std::fflush(nullptr);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(TrainAndWrite(ckpt, out, true).ok() ? 0 : 3);
    int status = 0;
    pid_t done = 0;
    if (i < kKills) {
      // Kill at a random moment after the checkpoint reaches a target step
      // that grows with i (the first target, -1, can kill before any
      // checkpoint). Tied to progress, not to wall time: a faster machine
      // does not finish the run before the kills.
      const int64_t target = i * 16 - 1 + timing.UniformInt(12);
      while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
             CheckpointStep(ckpt) < target) {
        ::usleep(300);
      }
      if (done == 0) {
        ::usleep(static_cast<useconds_t>(timing.Uniform() * 3000));
        ::kill(pid, SIGKILL);
      }
    }
    if (done == 0) ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_NE(done, -1);
    if (WIFSIGNALED(status)) {
      ASSERT_EQ(WTERMSIG(status), SIGKILL);
      ++killed;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "child " << i << ": status " << status;
      // (A child that finished before its kill leaves a checkpoint of the
      // whole run; the next ones resume it without training.)
    }
    // Every checkpoint reads back; its step never goes backwards.
    const int64_t now = CheckpointStep(ckpt);
    ASSERT_GE(now, step) << "kill " << i;
    step = now;
  }
  EXPECT_GT(killed, kKills / 2);  // (a loaded machine may miss a few)
  EXPECT_EQ(step, 300);
  // Some child resumed mid-run (neither fresh nor finished).
  int mid_run = 0;
  for (int64_t s : starts) mid_run += s > 0 && s < 300;
  EXPECT_GT(mid_run, 0);
  const std::vector<std::string> got = Lines(out);

  // The uninterrupted run, in this process (after the last fork).
  const std::string ref_ckpt = dir + "/ref.ckpt", ref_out = dir + "/ref.out";
  ASSERT_TRUE(TrainAndWrite(ref_ckpt, ref_out, false).ok());
  const std::vector<std::string> want = Lines(ref_out);
  ASSERT_GT(want.size(), 300u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(got[i], want[i]) << "line " << i;
  std::string resumed;
  for (int64_t s : starts) absl::StrAppend(&resumed, " ", s);
  std::printf("%d kills; children resumed at steps%s; %s\n", killed,
              resumed.c_str(), want.back().c_str());
}

}  // namespace
}  // namespace flowtape::training
