#include "training/energies.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "flows/energies.h"

namespace flowtape::training {

absl::StatusOr<Energy> ParseEnergy(const std::string& name) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "u1") return Energy::kU1;
  if (n == "u2") return Energy::kU2;
  if (n == "u3") return Energy::kU3;
  if (n == "u4") return Energy::kU4;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown energy '", name, "'; expected u1, u2, u3 or u4"));
}

std::string EnergyName(Energy e) {
  return absl::StrCat("u", static_cast<int>(e) + 1);
}

// Energy and flows::RezendeEnergy::Kind list U1-U4 in the same order.
Tensor PotentialEnergy(Energy e, const Tensor& z) {
  return flows::RezendeEnergy(static_cast<flows::RezendeEnergy::Kind>(e))
      .Value(z);
}

double LogNormalizer(Energy e, double lim, int grid) {
  const flows::RezendeEnergy u(static_cast<flows::RezendeEnergy::Kind>(e));
  absl::StatusOr<double> log_z = flows::LogNormalizer2D(u, lim, grid);
  FT_CHECK(log_z.ok(), "log_normalizer: ", log_z.status().ToString());
  return *log_z;
}

}  // namespace flowtape::training
