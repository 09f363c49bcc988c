#include "cli/cli.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "autodiff/status_macros.h"
#include "cli/checks.h"
#include "data/atomic_file.h"
#include "flowtape/version.h"
#include "parallel/mpi/mpi_communicator.h"

ABSL_FLAG(std::string, out_dir, "",
          "output directory for results.json, history.csv, the model and "
          "figures (default: runs/<binary>-YYYYmmdd-HHMMSS)");
ABSL_FLAG(std::string, dtype, "",
          "f32 | f64: the model's dtype (empty: the binary's default, "
          "shown by --help)");
ABSL_FLAG(int, threads, 0,
          "data-parallel replicas for training (0: $FLOWTAPE_NUM_THREADS, "
          "else 1; under mpirun at most 1: the ranks are the replicas)");
ABSL_FLAG(int64_t, checkpoint_every, 0,
          "NLL and flow-matching training write their whole state (model, "
          "optimizer, step, data order, best model, EMA, histories) to "
          "<out_dir>/train-K.ckpt, K the run's K-th training, every N steps; "
          "0: never");
ABSL_FLAG(std::string, resume, "",
          "an earlier run's --out_dir written with --checkpoint_every: each "
          "NLL or flow-matching training continues from its train-K.ckpt (a "
          "finished one "
          "returns its result, a missing one starts afresh); the other flags "
          "must be that run's");

namespace flowtape::cli {
namespace {

// This process's rank under mpirun (Open MPI's OMPI_COMM_WORLD_RANK), else 0.
int MpiRank() {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  int r = 0;
  return rank != nullptr && absl::SimpleAtoi(rank, &r) ? r : 0;
}

// The status code of errno `err`, message "what: <strerror(err)>".
absl::Status ErrnoError(int err, const std::string& what) {
  return absl::ErrnoToStatus(err, what);
}

std::string Now(const char* format, bool utc) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  if (utc)
    gmtime_r(&t, &tm);
  else
    localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), format, &tm);
  return buf;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos)
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  return "unknown";
}

std::string Compiler() {
#if defined(__clang__)
  return absl::StrCat("clang ", __clang_version__);
#elif defined(__GNUC__)
  return absl::StrCat("gcc ", __VERSION__);
#else
  return "unknown";
#endif
}

bool IsAbseilFlag(const absl::CommandLineFlag& flag) {
  return absl::StrContains(flag.Filename(), "absl/");
}

absl::StatusOr<int> ResolveThreads(int flag) {
  if (flag < 0 || flag > training::kMaxThreads)
    return absl::InvalidArgumentError(absl::StrCat(
        "--threads=", flag, ": must be in [0, ", training::kMaxThreads, "]"));
  if (flag > 0) return flag;
  const char* env = std::getenv("FLOWTAPE_NUM_THREADS");
  if (env == nullptr || *env == '\0') return 1;
  int n = 0;
  if (!absl::SimpleAtoi(env, &n) || n < 1 || n > training::kMaxThreads)
    return absl::InvalidArgumentError(absl::StrCat(
        "FLOWTAPE_NUM_THREADS='", env, "': must be an integer in [1, ",
        training::kMaxThreads, "]"));
  return n;
}

std::string Number(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.9g", v) : std::string();
}

}  // namespace

absl::StatusOr<std::string> MakeRunDir(const std::string& base) {
  const size_t slash = base.rfind('/');
  if (slash != std::string::npos && slash > 0)
    if (absl::Status s = MakeOutputDir(base.substr(0, slash)); !s.ok())
      return s;
  for (int k = 1; k <= 1000; ++k) {
    std::string dir = k == 1 ? base : absl::StrCat(base, "-", k);
    if (::mkdir(dir.c_str(), 0777) == 0) {
      if (absl::Status s = MakeOutputDir(dir); !s.ok()) return s;
      return dir;
    }
    if (errno != EEXIST)
      return ErrnoError(errno,
                        absl::StrCat("cannot create directory '", dir, "'"));
  }
  return absl::AlreadyExistsError(
      absl::StrCat("'", base, "' and ", base, "-2 ... -1000 all exist"));
}

absl::StatusOr<DType> ParseDType(const std::string& text) {
  if (text == "f32") return kFloat32;
  if (text == "f64") return kFloat64;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype=", text, ": must be f32 or f64"));
}

std::string DTypeFlagName(DType dtype) {
  return dtype == kFloat32 ? "f32" : "f64";
}

void History::Add(const HistoryRow& row) { rows_.push_back(row); }

void History::AddTraining(const training::TrainResult& result,
                          int64_t log_every, const std::string& run) {
  const auto& losses = result.losses;
  const auto& elapsed = result.elapsed;
  std::map<int64_t, double> val(result.val_history.begin(),
                                result.val_history.end());
  const int64_t n = static_cast<int64_t>(losses.size());
  int64_t prev = 0;
  double sum = 0;
  for (int64_t s = 1; s <= n; ++s) {
    sum += losses[s - 1];
    const auto v = val.find(s);
    if (!(log_every > 0 && s % log_every == 0) && v == val.end() && s != n)
      continue;
    HistoryRow row;
    row.step = s;
    row.train_loss = sum / (s - prev);
    if (v != val.end()) row.val_loss = v->second;
    if (static_cast<int64_t>(elapsed.size()) >= s) {
      const double t0 = prev > 0 ? elapsed[prev - 1] : 0.0;
      const double dt = elapsed[s - 1] - t0;
      if (dt > 0) row.steps_per_s = (s - prev) / dt;
    }
    row.run = run;
    rows_.push_back(row);
    prev = s;
    sum = 0;
  }
}

std::string History::Csv() const {
  std::string out = absl::StrCat("step,train_loss,val_loss,steps_per_s",
                                 has_nfe_ ? ",nfe" : "", ",run\n");
  for (const HistoryRow& r : rows_)
    absl::StrAppend(&out, r.step, ",", Number(r.train_loss), ",",
                    Number(r.val_loss), ",", Number(r.steps_per_s),
                    has_nfe_ ? absl::StrCat(",", Number(r.nfe)) : "", ",",
                    r.run, "\n");
  return out;
}

HistoryWindow::HistoryWindow(History& history, std::string run, int64_t every)
    : history_(history),
      run_(std::move(run)),
      every_(std::max<int64_t>(1, every)),
      since_(std::chrono::steady_clock::now()) {}

void HistoryWindow::Step(double loss, double nfe) {
  ++step_, ++count_;
  loss_ += loss, nfe_ += nfe;
  if (step_ % every_ == 0) Flush();
}

void HistoryWindow::Flush() {
  if (count_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - since_).count();
  HistoryRow row;
  row.step = step_;
  row.train_loss = loss_ / count_;
  row.steps_per_s = dt > 0 ? count_ / dt : NAN;
  row.nfe = nfe_ / count_;
  row.run = run_;
  history_.Add(row);
  count_ = 0, loss_ = 0, nfe_ = 0;
  since_ = now;
}

Experiment::Experiment(const CliSpec& spec,
                       std::vector<std::string> command_line, DType dtype,
                       int threads, std::string out_dir)
    : spec_(spec),
      command_line_(std::move(command_line)),
      dtype_(dtype),
      threads_(threads),
      out_dir_(std::move(out_dir)),
      started_(Now("%Y-%m-%dT%H:%M:%SZ", true)),
      start_(std::chrono::steady_clock::now()) {}

void Experiment::SingleThreaded(const std::string& why) {
  if (threads_ > 1)
    std::cerr << spec_.name << ": --threads=" << threads_
              << " not used: " << why << "\n";
  threads_ = 1;
  SetRunReplicas(1);
}

std::string Experiment::Output(const std::string& file) {
  files_.push_back(file);
  return absl::StrCat(out_dir_, "/", file);
}

absl::Status Experiment::WriteFigure(const viz::Figure& figure,
                                     const std::string& file) {
  const std::string path = Output(file);
  if (absl::Status s = figure.Write(path); !s.ok()) return s;
  std::cout << "wrote " << path << "\n";
  return absl::OkStatus();
}

namespace {

// The group of the mpirun job this process is a rank of, else nullptr;
// there the ranks are the replicas, so threads > 1 is refused.
absl::StatusOr<parallel::Communicator*> MpiRanks(int threads) {
  FT_ASSIGN_OR_RETURN(parallel::Communicator * comm,
                      parallel::mpi::CommunicatorFromEnvironment());
  if (comm != nullptr && threads > 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--threads=", threads,
        " under mpirun: the ranks are the replicas; run one thread per rank"));
  return comm;
}

// This rank's replica from `make`. A failed factory, or a replica that
// lacks one of `parts` (`complete` false), fails the group: the other ranks
// stop, naming this one.
template <typename ReplicaT, typename Complete>
absl::StatusOr<ReplicaT> RankReplica(
    parallel::Communicator& comm,
    const std::function<absl::StatusOr<ReplicaT>(int)>& make, Complete complete,
    const char* op, const char* parts) {
  absl::StatusOr<ReplicaT> r = make(comm.rank());
  if (r.ok() && !complete(*r))
    r = absl::InvalidArgumentError(absl::StrCat(op, ": the factory's replica ",
                                                comm.rank(), " lacks ", parts));
  if (!r.ok()) comm.Abort(r.status());
  return r;
}

}  // namespace

int Experiment::rank() const { return MpiRank(); }

void Experiment::SetCheckpointFlags(int64_t every, std::string resume_dir) {
  checkpoint_every_ = every;
  resume_dir_ = std::move(resume_dir);
}

absl::Status Experiment::RefuseCheckpointFlags(const char* what) const {
  if (checkpoint_every_ == 0 && resume_dir_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--checkpoint_every / --resume: ", what,
                   " training does not checkpoint its whole state; NLL and "
                   "flow-matching training resume"));
}

void Experiment::SetCheckpointing(training::TrainOptions& options) {
  const std::string file = absl::StrCat("train-", ++trainings_, ".ckpt");
  if (checkpoint_every_ > 0) {
    options.checkpoint_every = checkpoint_every_;
    options.checkpoint_path = Output(file);
  }
  if (!resume_dir_.empty()) {
    options.resume_from = absl::StrCat(resume_dir_, "/", file);
    options.resume_missing_ok = true;
  }
}

absl::StatusOr<training::ThreadedTraining> Experiment::Train(
    const training::ReplicaFactory& make, const training::TrainData& data,
    training::TrainOptions options) {
  FT_ASSIGN_OR_RETURN(parallel::Communicator * comm, MpiRanks(threads_));
  SetCheckpointing(options);
  if (comm == nullptr) {
    options.threads = threads_;
    return training::TrainNllThreads(make, data, options);
  }
  // Under mpirun the processes are the replicas.
  options.communicator = comm;
  training::ThreadedTraining run;
  FT_ASSIGN_OR_RETURN(run.replica,
                      RankReplica(
                          *comm, make,
                          [](const training::Replica& r) {
                            return r.model != nullptr && r.nll &&
                                   r.optimizer != nullptr;
                          },
                          "train_nll", "a model, an nll or an optimizer"));
  FT_ASSIGN_OR_RETURN(
      run.result, training::TrainNll(*run.replica.model, run.replica.nll,
                                     *run.replica.optimizer, data, options));
  return run;
}

absl::StatusOr<training::ThreadedFlowMatching> Experiment::TrainFlowMatching(
    const training::FlowMatchingReplicaFactory& make,
    const training::TrainData& data,
    training::FlowMatchingTrainOptions options) {
  FT_ASSIGN_OR_RETURN(parallel::Communicator * comm, MpiRanks(threads_));
  SetCheckpointing(options);
  options.threads = comm == nullptr ? threads_ : 1;
  if (comm == nullptr)
    return training::TrainFlowMatchingThreads(make, data, options);
  options.communicator = comm;
  training::ThreadedFlowMatching run;
  FT_ASSIGN_OR_RETURN(
      run.replica,
      RankReplica(
          *comm, make,
          [](const training::FlowMatchingReplica& r) {
            return r.model != nullptr && r.nll && r.loss &&
                   r.optimizer != nullptr;
          },
          "train_flow_matching", "a model, an nll, a loss or an optimizer"));
  const training::FlowMatchingReplica& r = run.replica;
  FT_ASSIGN_OR_RETURN(run.result, training::TrainFlowMatching(
                                      *r.model, r.nll, r.loss, *r.optimizer,
                                      data, options, r.ema.get()));
  return run;
}

absl::StatusOr<training::ThreadedReverseKl> Experiment::TrainReverseKl(
    const training::ReverseKlReplicaFactory& make,
    training::ReverseKlOptions options) {
  FT_RETURN_IF_ERROR(RefuseCheckpointFlags("reverse-KL"));
  FT_ASSIGN_OR_RETURN(parallel::Communicator * comm, MpiRanks(threads_));
  options.threads = comm == nullptr ? threads_ : 1;
  if (comm == nullptr) return training::TrainReverseKlThreads(make, options);
  options.communicator = comm;
  training::ThreadedReverseKl run;
  FT_ASSIGN_OR_RETURN(
      run.replica,
      RankReplica(
          *comm, make,
          [](const training::ReverseKlReplica& r) {
            return r.model != nullptr && r.log_p && r.optimizer != nullptr;
          },
          "train_reverse_kl", "a model, a log density or an optimizer"));
  const training::ReverseKlReplica& r = run.replica;
  FT_ASSIGN_OR_RETURN(
      run.result,
      training::TrainReverseKl(*r.model, r.log_p, *r.optimizer, options));
  return run;
}

io::Json Experiment::Results(const absl::Status& status) const {
  io::Json flags = io::Json::object();
  for (const auto& [name, flag] : absl::GetAllFlags())
    if (!IsAbseilFlag(*flag)) flags[std::string(name)] = flag->CurrentValue();
  io::Json timings = timings_;
  timings["total_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  io::Json j;
  j["binary"] = spec_.name;
  j["command_line"] = command_line_;
  j["status"] = status.ok() ? std::string("ok") : status.ToString();
  j["flags"] = flags;
  j["config"] = config_;
  j["seed"] = seed_;
  j["dtype"] = DTypeFlagName(dtype_);
  j["threads"] = threads_;
  const char* ranks = std::getenv("OMPI_COMM_WORLD_SIZE");  // under mpirun
  int r = 1;
  j["ranks"] = ranks != nullptr && absl::SimpleAtoi(ranks, &r) ? r : 1;
  j["out_dir"] = out_dir_;
  j["started"] = started_;
  j["machine"] = {
      {"cpu_model", CpuModel()},
      {"cores", std::thread::hardware_concurrency()},
      {"compiler", Compiler()},
      {"flowtape_version", FLOWTAPE_VERSION_STRING},
  };
  j["metrics"] = metrics_;
  j["timings"] = timings;
  j["files"] = files_;
  return j;
}

absl::Status Experiment::Finish(const absl::Status& status) {
  if ((checkpoint_every_ > 0 || !resume_dir_.empty()) && trainings_ == 0)
    std::cerr << spec_.name
              << ": --checkpoint_every / --resume not used: this run trained "
                 "nothing through Experiment::Train or TrainFlowMatching\n";
  const std::string json = Results(status).dump(2) + "\n";
  const std::string results = absl::StrCat(out_dir_, "/results.json");
  const std::string history = absl::StrCat(out_dir_, "/history.csv");
  if (absl::Status s = data::WriteFileAtomically(results, json); !s.ok())
    return s;
  if (absl::Status s = data::WriteFileAtomically(history, history_.Csv());
      !s.ok())
    return s;
  std::cout << "wrote " << results << " and history.csv\n";
  return absl::OkStatus();
}

absl::StatusOr<Experiment> ParseCommandLine(const CliSpec& spec, int argc,
                                            char** argv) {
  absl::SetProgramUsageMessage(spec.usage);
  ExitIfHelpRequested(
      spec.name, spec.usage,
      absl::StrCat(" (--dtype default here: ", DTypeFlagName(spec.dtype), ")"),
      argc, argv);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << spec.name << ": unexpected positional argument '" << rest[1]
              << "' (flags are --name=value; --help lists them)\n";
    std::exit(1);
  }
  DType dtype = spec.dtype;
  if (const std::string d = absl::GetFlag(FLAGS_dtype); !d.empty()) {
    auto parsed = ParseDType(d);
    if (!parsed.ok()) return parsed.status();
    dtype = *parsed;
  }
  auto threads = ResolveThreads(absl::GetFlag(FLAGS_threads));
  if (!threads.ok()) return threads.status();
  const int64_t checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  if (checkpoint_every < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint_every=", checkpoint_every,
                     ": must be >= 0 (0: no checkpoints)"));
  std::string resume = absl::GetFlag(FLAGS_resume);
  if (!resume.empty()) {
    const std::string given_resume = resume;
    resume = ResolvePath(resume);
    struct stat st;
    if (::stat(resume.c_str(), &st) != 0)
      return ErrnoError(errno, absl::StrCat("--resume=", given_resume));
    if (!S_ISDIR(st.st_mode))
      return absl::InvalidArgumentError(
          absl::StrCat("--resume=", given_resume,
                       ": not a directory (want an earlier run's --out_dir)"));
    while (resume.size() > 1 && resume.back() == '/') resume.pop_back();
  }
  SetRunReplicas(*threads);  // memory checks count a model copy per replica
  const std::string given = absl::GetFlag(FLAGS_out_dir);
  std::string dir = given;
  if (MpiRank() > 0) {
    // Under mpirun every rank runs the whole program; rank 0's outputs are
    // the run's, the others' go to a scratch folder removed at the end.
    std::string scratch = absl::StrCat(
        std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp",
        "/flowtape-rank", MpiRank(), "-XXXXXX");
    if (::mkdtemp(scratch.data()) == nullptr)
      return ErrnoError(errno, absl::StrCat("mkdtemp ", scratch));
    std::cout.setstate(std::ios::badbit);
    Experiment ex(spec, std::vector<std::string>(argv, argv + argc), dtype,
                  *threads, scratch);
    ex.SetCheckpointFlags(checkpoint_every, resume);
    return ex;
  }
  if (dir.empty()) {
    auto made = MakeRunDir(ResolvePath(
        absl::StrCat("runs/", spec.name, "-", Now("%Y%m%d-%H%M%S", false))));
    if (!made.ok())
      return absl::Status(
          made.status().code(),
          absl::StrCat("--out_dir (default): ", made.status().message()));
    dir = *made;
  } else {
    dir = ResolvePath(dir);
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (absl::Status s = MakeOutputDir(dir); !s.ok())
      return absl::Status(s.code(),
                          absl::StrCat("--out_dir=", given, ": ", s.message()));
  }
  if (dir[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof(cwd)) != nullptr)
      dir = absl::StrCat(cwd, "/", dir);
  }
  Experiment ex(spec, std::vector<std::string>(argv, argv + argc), dtype,
                *threads, dir);
  ex.SetCheckpointFlags(checkpoint_every, resume);
  return ex;
}

int Main(const CliSpec& spec, int argc, char** argv,
         const std::function<absl::Status(Experiment&)>& run) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines when piped
  auto ex = ParseCommandLine(spec, argc, argv);
  if (!ex.ok()) {
    std::cerr << spec.name << ": " << ex.status() << "\n";
    return 1;
  }
  std::cout << spec.name << ": output in " << ex->out_dir() << "\n";
  const absl::Status s = run(*ex);
  const absl::Status written = ex->Finish(s);
  if (MpiRank() > 0) {
    std::error_code ignored;
    std::filesystem::remove_all(ex->out_dir(), ignored);
  }
  if (!s.ok()) {
    std::cerr << spec.name << ": " << s << "\n";
    return 1;
  }
  if (!written.ok()) {
    std::cerr << spec.name << ": " << written << "\n";
    return 1;
  }
  return 0;
}

}  // namespace flowtape::cli
