// A cli::Main binary (cli/cli.h) whose replica factory
// fails on one rank, for mpi_cli_test.sh: a planar flow trained by NLL
// (--loop=nll, Experiment::Train) or reverse KL against U1 (--loop=kl,
// Experiment::TrainReverseKl) for --steps steps, whose factory returns an
// error (--fault=error) or a replica without its optimizer
// (--fault=incomplete) on rank --fault_rank. Records the trained model's
// first parameters as metrics.
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "cli/cli.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/planar.h"
#include "nn/optim.h"
#include "training/reverse_kl.h"
#include "training/train.h"
#include "training/train_threads.h"

ABSL_FLAG(std::string, loop, "kl", "nll | kl");
ABSL_FLAG(std::string, fault, "", "'' | error | incomplete");
ABSL_FLAG(int, fault_rank, 1, "the rank whose factory fails");
ABSL_FLAG(int64_t, steps, 5, "training steps");

namespace flowtape::experiments {
namespace {

struct Parts {
  std::shared_ptr<flows::FlowModel> model;
  std::shared_ptr<nn::Optimizer> optimizer;
};

// Rank `rank`'s model and optimizer, or the fault asked for.
absl::StatusOr<Parts> MakeParts(int rank, DType dtype) {
  const std::string fault = absl::GetFlag(FLAGS_fault);
  if (rank == absl::GetFlag(FLAGS_fault_rank) && fault == "error")
    return absl::DataLossError(absl::StrCat("rank ", rank, "'s factory"));
  Rng init(7);
  FT_ASSIGN_OR_RETURN(auto flow, flows::Planar::Create(2, init));
  FT_ASSIGN_OR_RETURN(auto base, flows::StandardNormal::Create(Shape{2}));
  Parts p;
  p.model = std::make_shared<flows::FlowModel>(base, flow);
  p.model->To(dtype);
  if (rank == absl::GetFlag(FLAGS_fault_rank) && fault == "incomplete")
    return p;
  nn::AdamOptions adam_options;
  adam_options.lr = 1e-2;
  FT_ASSIGN_OR_RETURN(p.optimizer, nn::Adam::Create(*p.model, adam_options));
  return p;
}

absl::Status Run(cli::Experiment& ex) {
  std::shared_ptr<const nn::Module> trained;
  if (absl::GetFlag(FLAGS_loop) == "nll") {
    training::ReplicaFactory make =
        [&](int rank) -> absl::StatusOr<training::Replica> {
      FT_ASSIGN_OR_RETURN(Parts p, MakeParts(rank, ex.dtype()));
      training::NllFn nll = [m = p.model](const Tensor& x, const Tensor& c,
                                          Rng&) { return m->Nll(x, c); };
      return training::Replica{p.model, nll, p.optimizer};
    };
    Rng rng(3);
    training::TrainData data;
    data.train = Tensor::Randn({64, 2}, rng, ex.dtype());
    training::TrainOptions o;
    o.batch_size = 16;
    o.max_steps = absl::GetFlag(FLAGS_steps);
    o.log_every = 0;
    FT_ASSIGN_OR_RETURN(training::ThreadedTraining run,
                        ex.Train(make, data, o));
    trained = run.replica.model;
  } else {
    training::ReverseKlReplicaFactory make =
        [&](int rank) -> absl::StatusOr<training::ReverseKlReplica> {
      FT_ASSIGN_OR_RETURN(Parts p, MakeParts(rank, ex.dtype()));
      return training::ReverseKlReplica{
          p.model, training::EnergyLogDensity(training::Energy::kU1),
          p.optimizer};
    };
    training::ReverseKlOptions o;
    o.batch_size = 16;
    o.steps = absl::GetFlag(FLAGS_steps);
    o.log_every = 0;
    FT_ASSIGN_OR_RETURN(training::ThreadedReverseKl run,
                        ex.TrainReverseKl(make, o));
    trained = run.replica.model;
  }
  ex.metrics()["parameters"] =
      trained->Parameters().at(0).ToVector();  // the planar unit's w
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"mpi_cli_main", "a replica factory that fails on one rank",
       flowtape::kFloat64},
      argc, argv, flowtape::experiments::Run);
}
