// The command line and output folder of a command-line program: the
// experiment and paper binaries (experiments/*, benchmarks/ programs with a
// main) and programs of your own (//cli, CMake flowtape::cli).
//
// A binary is
//   absl::Status Run(cli::Experiment& ex) { ... }
//   int main(int argc, char** argv) {
//     return cli::Main({"toy2d", kUsage, kFloat32}, argc, argv, Run);
//   }
// Main, in order:
//   1. parses the flags (Abseil). --help / --helpshort / -h: the usage and
//      the binary's own flags (with the shared ones below); --helpfull:
//      every flag, Abseil's included; --helpmatch=S / --helpon=S /
//      --helppackage=S: the flags whose name or source file contains S; all
//      to stdout, exit 0 (ExitIfHelpRequested, cli/command_line.h).
//      An unknown flag or a malformed value (Abseil's message names it) or
//      a positional argument ("unexpected positional argument 'x'") exits 1.
//   2. checks the shared flags, before any work:
//        --dtype=f32|f64  the models' dtype (default: CliSpec::dtype);
//        --threads=N      data-parallel replicas for NLL, flow-matching
//                         and reverse-KL training (training/train_threads.h),
//                         N in [0, 4096] (training::kMaxThreads); 0 = the
//                         value of FLOWTAPE_NUM_THREADS, else 1. Under
//                         mpirun the ranks are the replicas (Experiment::
//                         Train). The memory check (CheckRunMemory,
//                         cli/checks.h) counts one model copy per
//                         replica;
//        --out_dir=D      default runs/<binary>-YYYYmmdd-HHMMSS (local time;
//                         -2, -3, ... appended when taken: MakeRunDir);
//        --checkpoint_every=N  N >= 0: the K-th Experiment::Train or
//                         TrainFlowMatching call of the run writes
//                         <out_dir>/train-K.ckpt every N steps
//                         (TrainOptions::checkpoint_every; the model,
//                         optimizer and training state, atomic); 0: none;
//        --resume=D       an earlier run's output directory: the K-th
//                         such call resumes from D/train-K.ckpt
//                         (TrainOptions::resume_from, resume_missing_ok):
//                         rerunning a killed command with --resume=<its
//                         out_dir> gives the uninterrupted run's results
//                         (the other flags must be that run's; a changed
//                         seed, batch or data is an error naming it). D
//                         must be a directory. Reverse-KL training refuses
//                         both flags (InvalidArgument); a run that trains
//                         nothing through those calls says on stderr that
//                         they were not used.
//      Relative paths (--out_dir, input paths through ResolvePath) resolve
//      against $BUILD_WORKING_DIRECTORY, the directory `bazel run` was
//      called from, when it is set, else the current directory. The output
//      directory is created with its parents and a file is created and
//      removed in it; a failure is "--out_dir=D: cannot create directory
//      'P': <strerror>" (or "cannot write in"), exit 1.
//   3. runs `run`, then writes <out_dir>/results.json and history.csv (also
//      when `run` failed: results.json records the status) and returns 0;
//      a failed run (or a failed write of the results) prints
//      "<binary>: <status>" to stderr and returns 1.
//
// results.json (io/json.h):
//   {"binary", "command_line": [argv...], "status": "ok" | the error,
//    "flags": {name: value as text, for every flag not from Abseil},
//    "config": {...the effective configuration, e.g. the model spec...},
//    "seed", "dtype": "f32" | "f64", "threads", "ranks" (the mpirun group
//    size, else 1), "out_dir" (absolute),
//    "started" (UTC, ISO 8601),
//    "machine": {"cpu_model" (/proc/cpuinfo), "cores", "compiler",
//                "flowtape_version"},
//    "metrics": {...the binary's...},
//    "timings": {"total_s", ...the binary's...}, "files": [written files]}
// history.csv, one row per logged training step:
//   step,train_loss,val_loss,steps_per_s[,nfe],run
// train_loss is the mean over the steps since the previous row, val_loss
// empty where no validation ran, steps_per_s the rate over those steps
// (empty where the loop does not time its steps), nfe (only in binaries
// that solve ODEs) function evaluations per step (forward and backward
// solves), run a label (the model or series, for binaries that train
// several).
#ifndef FLOWTAPE_CLI_CLI_H_
#define FLOWTAPE_CLI_CLI_H_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/dtype.h"
#include "cli/command_line.h"
#include "io/json.h"
#include "training/train.h"
#include "training/train_flow_matching.h"
#include "training/train_threads.h"
#include "viz/figure.h"

namespace flowtape::cli {

struct CliSpec {
  const char* name;   // the binary ("toy2d"): messages, default --out_dir
  const char* usage;  // what it does and an example command line
  DType dtype;        // --dtype default (f32 experiments, f64 paper runs)
};

// ResolvePath(file) and MakeOutputDir(dir): cli/command_line.h.
// A run folder of its own: creates `base`, or base-2, base-3, ... (up to
// base-1000), the first that did not exist, with MakeOutputDir's checks,
// and returns it. mkdir is atomic, so runs started in the same second (the
// default folder's name) never share one.
absl::StatusOr<std::string> MakeRunDir(const std::string& base);
// "f32" / "f64" -> dtype; else InvalidArgument naming the flag.
absl::StatusOr<DType> ParseDType(const std::string& text);
std::string DTypeFlagName(DType dtype);

struct HistoryRow {
  int64_t step = 0;
  double train_loss = NAN;
  double val_loss = NAN;  // NaN: no validation at this step
  double steps_per_s = NAN;
  double nfe = NAN;  // NaN: not an ODE model
  std::string run;
};

class History {
 public:
  void Add(const HistoryRow& row);
  // Rows of a TrainNll run: every step s with s % log_every == 0 (log_every
  // <= 0: none), every validation step and the last step.
  void AddTraining(const training::TrainResult& result, int64_t log_every,
                   const std::string& run);
  void set_has_nfe(bool has) { has_nfe_ = has; }
  const std::vector<HistoryRow>& rows() const { return rows_; }
  std::string Csv() const;

 private:
  std::vector<HistoryRow> rows_;
  bool has_nfe_ = false;
};

// History rows of a hand-written training loop: Step() after every step;
// every `every` steps, and at Flush() for a partial window, a row with the
// window's mean loss and nfe and its steps per second.
class HistoryWindow {
 public:
  HistoryWindow(History& history, std::string run, int64_t every);
  void Step(double loss, double nfe = NAN);
  void Flush();

 private:
  History& history_;
  std::string run_;
  int64_t every_, step_ = 0, count_ = 0;
  double loss_ = 0, nfe_ = 0;
  std::chrono::steady_clock::time_point since_;
};

class Experiment {
 public:
  Experiment(const CliSpec& spec, std::vector<std::string> command_line,
             DType dtype, int threads, std::string out_dir);

  DType dtype() const { return dtype_; }
  int threads() const { return threads_; }
  const std::string& out_dir() const { return out_dir_; }
  void set_seed(uint64_t seed) { seed_ = seed; }
  // A run that does not train by NLL on replicas: prints why --threads > 1
  // is not used and records threads = 1.
  void SingleThreaded(const std::string& why);

  // <out_dir>/file, listed under "files" in results.json.
  std::string Output(const std::string& file);
  // Writes the figure as <out_dir>/file (PNG) and prints the path.
  absl::Status WriteFigure(const viz::Figure& figure, const std::string& file);

  io::Json& config() { return config_; }  // the effective configuration
  io::Json& metrics() { return metrics_; }
  io::Json& timings() { return timings_; }
  History& history() { return history_; }

  // Data-parallel training of replicas from `make`, the one place that
  // picks how ranks run: on threads() threads (the options' threads are set
  // here) or, under mpirun (parallel::mpi::CommunicatorFromEnvironment), on
  // the processes of the job, this one training replica rank() with one
  // thread (--threads > 1 is InvalidArgument). The result and replica are
  // rank 0's on threads, this process's under mpirun (the ranks' parameters
  // and losses are equal); a factory that keeps more of its replica than it
  // returns keeps that of rank() (`if (rank == ex.rank()) ...`).
  // NLL (training/train.h):
  absl::StatusOr<training::ThreadedTraining> Train(
      const training::ReplicaFactory& make, const training::TrainData& data,
      training::TrainOptions options);
  // Flow matching (training/train_flow_matching.h):
  absl::StatusOr<training::ThreadedFlowMatching> TrainFlowMatching(
      const training::FlowMatchingReplicaFactory& make,
      const training::TrainData& data,
      training::FlowMatchingTrainOptions options);
  // Reverse KL (training/reverse_kl.h):
  absl::StatusOr<training::ThreadedReverseKl> TrainReverseKl(
      const training::ReverseKlReplicaFactory& make,
      training::ReverseKlOptions options);
  // This process's rank under mpirun, else 0.
  int rank() const;
  // --checkpoint_every and --resume (ParseCommandLine sets them).
  void SetCheckpointFlags(int64_t every, std::string resume_dir);

  // results.json and history.csv, recording `status` and the total time.
  absl::Status Finish(const absl::Status& status);
  io::Json Results(const absl::Status& status) const;

 private:
  CliSpec spec_;
  std::vector<std::string> command_line_;
  DType dtype_;
  int threads_;
  std::string out_dir_;
  uint64_t seed_ = 0;
  std::string started_;
  std::chrono::steady_clock::time_point start_;
  io::Json config_ = io::Json::object(), metrics_ = io::Json::object(),
           timings_ = io::Json::object();
  std::vector<std::string> files_;
  History history_;
  int64_t checkpoint_every_ = 0;
  std::string resume_dir_;  // absolute, or empty
  int trainings_ = 0;       // Train and TrainFlowMatching calls so far
  // Applies --checkpoint_every / --resume to the next training call.
  void SetCheckpointing(training::TrainOptions& options);
  absl::Status RefuseCheckpointFlags(const char* what) const;
};

// Parses and checks the command line (steps 1-2 above) into an Experiment.
// Exits the process for --help (0), unknown flags and positional arguments
// (1); returns a Status for bad shared flags or an unusable --out_dir.
absl::StatusOr<Experiment> ParseCommandLine(const CliSpec& spec, int argc,
                                            char** argv);
int Main(const CliSpec& spec, int argc, char** argv,
         const std::function<absl::Status(Experiment&)>& run);

}  // namespace flowtape::cli

#endif  // FLOWTAPE_CLI_CLI_H_
