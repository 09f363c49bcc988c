// Crash recovery: a training process that checkpoints every few steps is
// killed with SIGKILL at random moments, again and again; each new process
// resumes from the last checkpoint. After every kill:
//   - the checkpoint (if any) reads back intact and holds exactly the state
//     of an uninterrupted reference run at its step (parameters and Adam
//     state, bit for bit), and its step never goes backwards;
//   - every loss a process logged equals the reference loss of that step,
//     and each process starts logging at the step it resumed from (the loss
//     curve continues where the checkpoint left it);
//   - once a process has saved successfully (and started its next save), no
//     temporary of an earlier (dead) process is left in the directory.
// Every kill comes after a random delay; every other one then waits for a
// temporary to appear (a save in progress). A last process runs to a clean
// exit, after which the directory holds only the checkpoint and the logs.
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/optim.h"

namespace flowtape::nn {
namespace {

constexpr int kEvery = 4;  // checkpoint every kEvery steps
constexpr int kKills = 60;

// The run: an MLP (8 -> 256 -> 256 -> 8, ~70k parameters, so a save
// writes ~1.7 MB and takes a while) fitted by Adam to sin(x) on batches
// drawn from Rng(step): step t's batch and update depend on t only.
struct Run {
  Run()
      : rng(1),
        net_ptr(MLP::Create({8, 256, 256, 8}, Activation::kTanh, rng).value()),
        net(*net_ptr),
        opt(Adam::Create(net, {}).value()) {}
  double Step(int64_t t) {
    Rng data(1000 + static_cast<uint64_t>(t));
    Tensor x = Tensor::Randn({32, 8}, data);
    opt->ZeroGrad();
    Tensor loss = Mean(Square(net(x) - Sin(x)));
    Backward(loss);
    const double value = loss.item();
    Tape::Get().Reset();
    opt->Step();
    return value;
  }
  std::vector<std::vector<double>> State() const {
    std::vector<std::vector<double>> v;
    for (const auto& [name, t] : net.NamedParameters())
      v.push_back(t.ToVector());
    for (const auto& [name, t] : opt->NamedState()) v.push_back(t.ToVector());
    return v;
  }
  Rng rng;
  std::shared_ptr<MLP> net_ptr;
  MLP& net;
  std::shared_ptr<Adam> opt;
};

// The child process: resume from `ckpt` if it exists, then train up to
// step `stop`, logging "step loss" (loss as %a: exact) to `log` after every
// step and checkpointing every kEvery steps. Exit codes: 0 done, 3 the
// checkpoint did not load, 4 a save failed.
int Child(const std::string& ckpt, const std::string& log, int64_t stop) {
  Run run;
  if (::access(ckpt.c_str(), F_OK) == 0 &&
      !LoadCheckpoint(ckpt, run.net, run.opt.get()).ok())
    return 3;
  std::FILE* f = std::fopen(log.c_str(), "w");
  for (int64_t t = run.opt->step_count(); t < stop; ++t) {
    const double loss = run.Step(t);
    std::fprintf(f, "%lld %a\n", static_cast<long long>(t), loss);
    std::fflush(f);
    if ((t + 1) % kEvery == 0 &&
        !SaveCheckpoint(ckpt, run.net, run.opt.get()).ok())
      return 4;
  }
  std::fclose(f);
  return 0;
}

// The uninterrupted run, extended on demand.
class Reference {
 public:
  double Loss(int64_t t) {
    Extend(t + 1);
    return losses_[t];
  }
  // The state after `steps` steps (a multiple of kEvery).
  const std::vector<std::vector<double>>& State(int64_t steps) {
    Extend(steps);
    return states_.at(steps);
  }

 private:
  void Extend(int64_t steps) {
    if (states_.empty()) states_[0] = run_.State();
    while (static_cast<int64_t>(losses_.size()) < steps) {
      losses_.push_back(run_.Step(static_cast<int64_t>(losses_.size())));
      if (losses_.size() % kEvery == 0)
        states_[static_cast<int64_t>(losses_.size())] = run_.State();
    }
  }
  Run run_;
  std::vector<double> losses_;
  std::map<int64_t, std::vector<std::vector<double>>> states_;
};

std::vector<std::string> Temporaries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d))
    if (absl::StartsWith(e->d_name, "run.ckpt.tmp.")) out.push_back(e->d_name);
  closedir(d);
  return out;
}

// The pid in "run.ckpt.tmp.<pid>.XXXXXX".
int64_t PidOf(const std::string& temporary) {
  std::vector<std::string> parts = absl::StrSplit(temporary, '.');
  int64_t pid = -1;
  EXPECT_EQ(parts.size(), 5u) << temporary;
  EXPECT_TRUE(parts.size() == 5 && absl::SimpleAtoi(parts[3], &pid));
  return pid;
}

// The checkpoint's step (-1 without a checkpoint); checks its state
// against the reference.
int64_t CheckCheckpoint(const std::string& ckpt, Reference& ref) {
  if (::access(ckpt.c_str(), F_OK) != 0) return -1;
  auto file = ReadTensorFile(ckpt);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return -1;
  Run probe;  // same names and shapes
  EXPECT_TRUE(
      RestoreFromTensors("ckpt", *file, probe.net, probe.opt.get()).ok());
  const int64_t step = probe.opt->step_count();
  EXPECT_EQ(step % kEvery, 0);
  EXPECT_TRUE(probe.State() == ref.State(step)) << "state at step " << step;
  return step;
}

// Checks a child's log: consecutive steps from `start`, reference losses.
void CheckLog(const std::string& log, int64_t start, Reference& ref) {
  std::ifstream f(log);
  std::string line;
  int64_t want = start;
  while (std::getline(f, line)) {
    long long t;
    double loss;
    if (std::sscanf(line.c_str(), "%lld %la", &t, &loss) != 2) {
      // Only the last line can be cut short by the kill.
      EXPECT_TRUE(f.peek() == EOF) << log << ": " << line;
      break;
    }
    ASSERT_EQ(t, want) << log;
    ASSERT_EQ(loss, ref.Loss(t)) << log << " step " << t;
    ++want;
  }
}

TEST(CheckpointRecovery, SigkillAtRandomMomentsAlwaysResumes) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/rec";
  std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str());
  const std::string ckpt = dir + "/run.ckpt";
  Reference ref;
  Rng timing(7);
  int64_t step = -1;
  std::set<int64_t> dead;  // pids of killed children
  int mid_save = 0;
  for (int i = 0; i <= kKills; ++i) {
    const bool last = i == kKills;
    const std::string log = absl::StrCat(dir, "/log.", i);
    const int64_t start = std::max<int64_t>(step, 0);
    const int64_t stop = last ? start + 2 * kEvery : int64_t{1} << 40;
    std::fflush(nullptr);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(Child(ckpt, log, stop));
    if (!last) {
      ::usleep(static_cast<useconds_t>(timing.Uniform() * 120000));
      if (i % 2 == 1) {  // then wait for a save in progress (at most ~2 s)
        for (int k = 0; k < 20000; ++k) {
          bool saving = false;
          for (const std::string& t : Temporaries(dir))
            saving |= PidOf(t) == pid;
          if (saving) break;
          ::usleep(100);
        }
      }
      ::kill(pid, SIGKILL);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (last) {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    } else {
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "child " << i << " ended by itself: status " << status;
      dead.insert(pid);
    }
    const int64_t now = CheckCheckpoint(ckpt, ref);
    ASSERT_GE(now, step) << "kill " << i << ": step went backwards";
    CheckLog(log, start, ref);
    // The second save of this child started after its first had removed
    // the stale temporaries of the earlier children (the kill may land
    // between the first save's rename and its clean-up).
    const bool saved_twice = now >= start + 2 * kEvery;
    for (const std::string& t : Temporaries(dir)) {
      if (PidOf(t) == pid) ++mid_save;
      if (saved_twice) {
        EXPECT_EQ(PidOf(t), pid) << "kill " << i << ": " << t;
      }
    }
    step = now;
  }
  EXPECT_GE(step, 2 * kEvery);
  EXPECT_TRUE(Temporaries(dir).empty());
  // The run was exercised mid-save (kills timed by a temporary's presence).
  EXPECT_GT(mid_save, 0);
  std::printf("%d kills, %d mid-save; resumed up to step %lld\n", kKills,
              mid_save, static_cast<long long>(step));
}

}  // namespace
}  // namespace flowtape::nn
