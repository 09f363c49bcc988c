// torch_exchange: the flowtape side of the PyTorch exchange checks
// (tools/torch_exchange.py, tests/io/numpy_reader_test.sh).
//
//   torch_exchange export --spec=JSON --seed=S --n=N --out=DIR (created,
//   with its parents)
//     builds the catalogue model the spec describes (models/model_spec.h)
//     from Rng(S), adds 0.1 N(0, 1) to every parameter (so no layer is the
//     identity), draws x ~ N(0, 1) [N, event...] (and a context [N, K] when
//     context_dim > 0), computes log p(x | c), and writes
//       DIR/model.safetensors  parameters and buffers in PyTorch's layout
//                              (io/torch_exchange.h), metadata
//                              "flowtape.model" = the spec
//       DIR/model.ftm          the same model as a model file
//                              (models/model_file.h)
//       DIR/batch.safetensors  "x", "log_prob" [N] (and "context")
//   torch_exchange logprob --model=WEIGHTS --batch=BATCH --out=FILE
//     builds the model that WEIGHTS' "flowtape.model" metadata describes,
//     imports WEIGHTS (e.g. saved from PyTorch), and writes log p(x | c) for
//     BATCH's "x" (and "context") to FILE as "log_prob".
// Models compute in the spec's dtype; stochastic flows draw from Rng(0).
// A spec (from --spec or from WEIGHTS' metadata) passes models::
// CheckModelSize before the model is built (model_file.h: at most 2^26
// values for --spec, 16 x the values WEIGHTS holds + 2^26 for a file), and
// export's batch holds at most 2^26 values. Relative paths resolve against
// $BUILD_WORKING_DIRECTORY (cli/command_line.h).
// --help (and --helpfull, ...) prints the usage and the flags, exit 0; an
// unknown flag, a missing, unknown or extra command word, or a flag of the
// other command is an error. Exit status 1 with the Status on stderr for
// any error.
#include <cstdio>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/command_line.h"
#include "io/safetensors.h"
#include "io/torch_exchange.h"
#include "models/model_file.h"
#include "models/model_spec.h"
#include "models/zoo.h"

ABSL_FLAG(std::string, spec, "", "export: the model's JSON description");
ABSL_FLAG(uint64_t, seed, 1, "export: seed of the model and the batch");
ABSL_FLAG(int64_t, n, 16, "export: batch size (1..100000)");
ABSL_FLAG(std::string, out, "", "export: output directory; logprob: file");
ABSL_FLAG(std::string, model, "", "logprob: weights (safetensors)");
ABSL_FLAG(std::string, batch, "", "logprob: batch (safetensors)");

namespace flowtape {
namespace {

constexpr char kSpecKey[] = "flowtape.model";
constexpr char kUsage[] =
    "the flowtape side of the PyTorch exchange (tools/torch_exchange.py).\n"
    "  torch_exchange export --spec=JSON [--seed=S] [--n=N] --out=DIR\n"
    "    a catalogue model from its spec: DIR/model.safetensors, "
    "DIR/model.ftm,\n"
    "    DIR/batch.safetensors (x, log_prob[, context])\n"
    "  torch_exchange logprob --model=WEIGHTS --batch=BATCH --out=FILE\n"
    "    imports WEIGHTS (the spec from its metadata) and writes log p(x | c)"
    "\n    of BATCH to FILE\n"
    "  ./bazelw run //tools:torch_exchange -- export --spec='{...}' "
    "--out=exported";
constexpr int64_t kMaxBatchValues = int64_t{1} << 26;

absl::StatusOr<std::shared_ptr<flows::FlowModel>> Build(
    const models::ModelSpec& spec, uint64_t seed) {
  Rng rng(seed);
  FT_ASSIGN_OR_RETURN(auto model,
                      models::MakeModel(spec.family, spec.config, rng));
  model->To(spec.dtype);
  return model;
}

Tensor LogProb(const flows::FlowModel& model, const Tensor& x,
               const Tensor& context) {
  NoGradScope no_grad;
  Rng rng(0);
  return model.LogProb(x, context, &rng).Detach();
}

// InvalidArgument if a flag of the other command was given.
absl::Status NotFor(const char* command,
                    std::initializer_list<std::pair<const char*, bool>> given) {
  for (const auto& [flag, set] : given)
    if (set)
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " is not a flag of '", command, "'"));
  return absl::OkStatus();
}

absl::Status Export() {
  FT_RETURN_IF_ERROR(
      NotFor("export", {{"model", !absl::GetFlag(FLAGS_model).empty()},
                        {"batch", !absl::GetFlag(FLAGS_batch).empty()}}));
  FT_ASSIGN_OR_RETURN(models::ModelSpec spec,
                      models::ModelSpecFromJson(absl::GetFlag(FLAGS_spec)));
  if (absl::Status s = models::CheckModelSize(spec.config, 0); !s.ok())
    return absl::Status(s.code(), absl::StrCat("--spec: ", s.message()));
  const int64_t n = absl::GetFlag(FLAGS_n);
  if (n < 1 || n > 100000)
    return absl::InvalidArgumentError("--n must lie in [1, 100000]");
  const int64_t values = n * spec.config.event.numel();  // <= 2^41
  if (values > kMaxBatchValues)
    return absl::InvalidArgumentError(absl::StrCat(
        "--n=", n, ": the batch would hold ", values, " values (event ",
        spec.config.event.ToString(), "), more than 2^26"));
  if (absl::GetFlag(FLAGS_out).empty())
    return absl::InvalidArgumentError("--out is required");
  const std::string dir = cli::ResolvePath(absl::GetFlag(FLAGS_out));
  if (absl::Status s = cli::MakeOutputDir(dir); !s.ok())
    return absl::Status(s.code(), absl::StrCat("--out: ", s.message()));
  FT_ASSIGN_OR_RETURN(auto model, Build(spec, absl::GetFlag(FLAGS_seed)));
  Rng rng(absl::GetFlag(FLAGS_seed) + 1);
  for (Tensor p : model->Parameters())
    VisitDType(p.dtype(), [&](auto zero) {
      using T = decltype(zero);
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<T>()[i] += static_cast<T>(0.1 * rng.Normal());
    });
  std::vector<int64_t> dims = {n};
  for (int64_t d : spec.config.event.dims()) dims.push_back(d);
  Tensor x = Tensor::Randn(Shape(dims), rng, spec.dtype);
  Tensor c = spec.config.context_dim > 0
                 ? Tensor::Randn({n, spec.config.context_dim}, rng, spec.dtype)
                 : Tensor();
  // No initialisation pass: the noise above already takes every ActNorm
  // off the identity (flows/actnorm.h), and LogProb never initialises.
  nn::NamedTensors batch = {{"x", x}, {"log_prob", LogProb(*model, x, c)}};
  if (c.defined()) batch.emplace_back("context", c);
  const std::string json = models::ModelSpecToJson(spec);
  FT_RETURN_IF_ERROR(io::ExportSafetensors(dir + "/model.safetensors", *model,
                                           {{kSpecKey, json}}));
  FT_RETURN_IF_ERROR(models::SaveModel(dir + "/model.ftm", spec, *model));
  return io::WriteSafetensors(dir + "/batch.safetensors", batch);
}

absl::Status LogProbOfImported() {
  FT_RETURN_IF_ERROR(
      NotFor("logprob", {{"spec", !absl::GetFlag(FLAGS_spec).empty()}}));
  if (absl::GetFlag(FLAGS_model).empty() ||
      absl::GetFlag(FLAGS_batch).empty() || absl::GetFlag(FLAGS_out).empty())
    return absl::InvalidArgumentError(
        "logprob needs --model, --batch and --out");
  const std::string weights = cli::ResolvePath(absl::GetFlag(FLAGS_model));
  io::Metadata meta;
  FT_ASSIGN_OR_RETURN(nn::NamedTensors in_file,
                      io::ReadSafetensors(weights, &meta));
  auto it = meta.find(kSpecKey);
  if (it == meta.end())
    return absl::InvalidArgumentError(
        absl::StrCat(weights, ": no \"", kSpecKey, "\" entry in __metadata__"));
  FT_ASSIGN_OR_RETURN(models::ModelSpec spec,
                      models::ModelSpecFromJson(it->second));
  double values = 0;  // in the file
  for (const auto& named : in_file)
    values += static_cast<double>(named.second.numel());
  if (absl::Status s = models::CheckModelSize(spec.config, values); !s.ok())
    return absl::Status(s.code(), absl::StrCat(weights, ": ", s.message()));
  in_file.clear();
  FT_ASSIGN_OR_RETURN(auto model, Build(spec, 0));
  FT_RETURN_IF_ERROR(io::ImportSafetensors(weights, *model));
  FT_ASSIGN_OR_RETURN(
      nn::NamedTensors batch,
      io::ReadSafetensors(cli::ResolvePath(absl::GetFlag(FLAGS_batch))));
  Tensor x, c;
  for (const auto& [name, t] : batch) {
    if (name == "x") x = t;
    if (name == "context") c = t;
  }
  if (!x.defined())
    return absl::InvalidArgumentError("--batch has no tensor \"x\"");
  std::vector<int64_t> dims = {x.dim(0)};
  for (int64_t d : spec.config.event.dims()) dims.push_back(d);
  if (x.shape() != Shape(dims) || x.dtype() != spec.dtype ||
      (c.defined() != (spec.config.context_dim > 0)) ||
      (c.defined() &&
       (c.shape() != Shape({x.dim(0), spec.config.context_dim}) ||
        c.dtype() != spec.dtype)))
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch: x ", x.shape().ToString(), " (and context) ",
        "do not fit the model (event ", spec.config.event.ToString(),
        ", context_dim ", spec.config.context_dim, ", ", DTypeName(spec.dtype),
        ")"));
  return io::WriteSafetensors(cli::ResolvePath(absl::GetFlag(FLAGS_out)),
                              {{"log_prob", LogProb(*model, x, c)}});
}

}  // namespace
}  // namespace flowtape

int main(int argc, char** argv) {
  using flowtape::kUsage;
  flowtape::cli::ExitIfHelpRequested("torch_exchange", kUsage, "", argc, argv);
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string command = args.size() >= 2 ? args[1] : "";
  absl::Status s;
  if (args.size() > 2) {
    s = absl::InvalidArgumentError(
        absl::StrCat("unexpected positional argument '", args[2], "'"));
  } else if (command == "export") {
    s = flowtape::Export();
  } else if (command == "logprob") {
    s = flowtape::LogProbOfImported();
  } else {
    s = absl::InvalidArgumentError(
        command.empty() ? "no command: want export or logprob (--help)"
                        : absl::StrCat("unknown command '", command,
                                       "': want export or logprob (--help)"));
  }
  if (!s.ok()) {
    std::fprintf(stderr, "torch_exchange: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
