// The program mpi_train_test.sh runs with and without mpirun: TrainNll of a
// small float64 MAF (4-D data, Adam) or Glow (2x4x4 images, SGD with
// momentum; see data_parallel_test.cc for why not Adam) on the group of
// parallel::mpi::CommunicatorFromEnvironment(), then on rank 0:
//   --out=F        writes the parameters and buffers (one per line, %.17g),
//                  then "losses", then the per-step losses;
//   --reference=F  compares parameters and losses with a file of --out's
//                  format (--reference_skip: leading reference losses not in
//                  this run); exit 1 if any differs by more than --tol.
// --save=F writes a checkpoint (model and optimizer) after the last step;
// --resume=F starts from one. --fault_rank=r with --fault=kill|stop (rank r
// kills or stops itself at its --fault_step-th nll call) or --fault=empty
// (rank r has no training data) exercises failures.
// Exit status: 0, 1 (mismatch), 2 (training returned an error; printed).
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/tensor.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "parallel/mpi/mpi_communicator.h"
#include "training/train.h"

ABSL_FLAG(std::string, flow, "maf", "maf or glow");
ABSL_FLAG(int64_t, steps, 20, "training steps");
ABSL_FLAG(int64_t, rows, 96, "training rows");
ABSL_FLAG(int64_t, batch, 48, "global batch");
ABSL_FLAG(std::string, out, "", "rank 0 writes parameters and losses here");
ABSL_FLAG(std::string, reference, "", "compare with this --out file");
ABSL_FLAG(int, reference_skip, 0, "reference losses before this run's");
ABSL_FLAG(double, tol, 1e-12, "largest allowed difference");
ABSL_FLAG(std::string, save, "", "checkpoint after the last step");
ABSL_FLAG(std::string, resume, "", "checkpoint to start from");
ABSL_FLAG(std::string, fault, "", "kill, stop or empty");
ABSL_FLAG(int, fault_rank, -1, "rank that fails");
ABSL_FLAG(int, fault_step, 5, "nll call at which it fails (kill, stop)");

namespace flowtape {
namespace {

std::vector<double> Flat(const nn::Module& m) {
  std::vector<double> v;
  for (const Tensor& p : m.Parameters())
    for (double x : p.ToVector()) v.push_back(x);
  for (const auto& [name, b] : m.NamedBuffers())
    for (double x : b.ToVector()) v.push_back(x);
  return v;
}

bool ReadOut(const std::string& path, std::vector<double>& params,
             std::vector<double>& losses) {
  std::ifstream in(path);
  std::string word;
  std::vector<double>* into = &params;
  while (in >> word) {
    if (word == "losses") {
      into = &losses;
    } else {
      into->push_back(std::stod(word));
    }
  }
  return !params.empty();
}

int Run() {
  absl::StatusOr<parallel::Communicator*> comm =
      parallel::mpi::CommunicatorFromEnvironment();
  if (!comm.ok()) {
    std::cerr << comm.status() << "\n";
    return 2;
  }
  const int rank = *comm ? (*comm)->rank() : 0;
  const bool glow = absl::GetFlag(FLAGS_flow) == "glow";
  models::ModelConfig c;
  c.layers = 2;
  c.hidden = {16, 16};
  c.event = glow ? Shape{2, 4, 4} : Shape{4};
  c.levels = 1;
  c.depth = 2;
  c.channels = 8;
  Rng init(11);
  auto model = models::MakeModel(absl::GetFlag(FLAGS_flow), c, init).value();
  std::shared_ptr<nn::Optimizer> optimizer;
  if (glow) {
    optimizer =
        nn::Sgd::Create(*model, nn::SgdOptions{/*lr=*/1e-2, /*momentum=*/0.9})
            .value();
  } else {
    optimizer = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/1e-2}).value();
  }
  if (const std::string r = absl::GetFlag(FLAGS_resume); !r.empty())
    if (absl::Status s = nn::LoadCheckpoint(r, *model, optimizer.get());
        !s.ok()) {
      std::cerr << s << "\n";
      return 2;
    }

  // Shifted, correlated Gaussian rows (images: 2x4x4 of them).
  const int64_t rows = absl::GetFlag(FLAGS_rows);
  std::vector<int64_t> dims = {rows};
  for (int64_t d : c.event.dims()) dims.push_back(d);
  Rng data_rng(1);
  training::TrainData data;
  data.train = Tensor::Randn(Shape(dims), data_rng);
  {
    double* p = data.train.mutable_data<double>();
    for (int64_t i = 1; i < data.train.numel(); ++i)
      p[i] = 0.6 * p[i - 1] + 0.5 * p[i] + (i % 3 == 0 ? 1.0 : 0.0);
  }
  const std::string fault = absl::GetFlag(FLAGS_fault);
  const bool faulty = rank == absl::GetFlag(FLAGS_fault_rank);
  if (faulty && fault == "empty") data.train = Tensor();

  training::TrainOptions o;
  o.batch_size = absl::GetFlag(FLAGS_batch);
  o.max_steps = absl::GetFlag(FLAGS_steps);
  o.log_every = 0;
  o.seed = 5;
  o.bucket_bytes = 4096;  // many buckets, some splitting a tensor
  o.communicator = *comm;
  if (const std::string s = absl::GetFlag(FLAGS_save); !s.empty()) {
    o.checkpoint_every = o.max_steps;
    o.checkpoint_path = s;
  }
  int calls = 0;
  training::NllFn nll = [&](const Tensor& x, const Tensor& ctx, Rng& rng) {
    if (faulty && ++calls == absl::GetFlag(FLAGS_fault_step)) {
      if (fault == "kill") raise(SIGKILL);
      if (fault == "stop") raise(SIGSTOP);
    }
    return model->Nll(x, ctx, &rng);
  };
  absl::StatusOr<training::TrainResult> r =
      training::TrainNll(*model, nll, *optimizer, data, o);
  if (!r.ok()) {
    // One write per line: the ranks' lines must not interleave.
    std::cerr << absl::StrCat("rank ", rank, ": ", r.status().ToString(), "\n");
    return 2;
  }
  if (rank != 0) return 0;
  const std::vector<double> params = Flat(*model);
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    std::ofstream f(out);
    for (double v : params) f << absl::StrFormat("%.17g\n", v);
    f << "losses\n";
    for (double v : r->losses) f << absl::StrFormat("%.17g\n", v);
  }
  if (const std::string ref = absl::GetFlag(FLAGS_reference); !ref.empty()) {
    std::vector<double> want, want_losses;
    if (!ReadOut(ref, want, want_losses) || want.size() != params.size()) {
      std::cerr << "reference " << ref << " unreadable or of another model\n";
      return 1;
    }
    double d = 0.0, dl = 0.0;
    for (size_t i = 0; i < params.size(); ++i)
      d = std::max(d, std::abs(params[i] - want[i]));
    const size_t skip = absl::GetFlag(FLAGS_reference_skip);
    if (want_losses.size() < skip + r->losses.size()) {
      std::cerr << "reference has " << want_losses.size() << " losses\n";
      return 1;
    }
    for (size_t i = 0; i < r->losses.size(); ++i)
      dl = std::max(dl, std::abs(r->losses[i] - want_losses[skip + i]));
    std::cout << absl::StrFormat(
        "%d ranks: max |parameter difference| %.3g, max |loss difference| "
        "%.3g (first loss %.6f)\n",
        r->ranks, d, dl, r->losses.front());
    if (!(d <= absl::GetFlag(FLAGS_tol) && dl <= absl::GetFlag(FLAGS_tol)))
      return 1;
  }
  return 0;
}

}  // namespace
}  // namespace flowtape

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return flowtape::Run();
}
