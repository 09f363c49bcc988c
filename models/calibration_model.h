// Calibrated classifiers: an MLP classifier followed by a calibration flow
// on the probability simplex (manifolds/calibration.h), and their
// self-describing model files.
//
//   p = softmax(MLP(x))          the classifier, computing in `dtype`
//   q = f(p)                     the map, computing in float64 on p cast to
//                                float64 (as experiments/calibration fits it)
//   Probabilities(x) = q [N, K];  LogProbabilities(x) = log q
// Maps ("map"):
//   none          q = p
//   temperature   q = softmax(log(p) / a)        SimplexCalibration {K,
//   temperature} fcal          q = softmax(log(p) / a + c) SimplexCalibration
//   {K} generalized   q = softmax(A log(p) + c)      GeneralizedCalibration {K}
// The module holds tensors of two dtypes (the classifier's and the map's
// float64): ask classifier_dtype(), never Module::dtype().
//
// A calibration model file is a checkpoint (nn/checkpoint.h) of the
// module's parameters and buffers ("classifier.*", "map.*") whose metadata
// entry "calibration_model" holds
//   {"format": "flowtape.calibration_model", "version": 1, "map": "fcal",
//    "sizes": [784, 256, 256, 10], "activation": "relu", "dtype": "float32"}
// Reading is strict: every key required, no others; map one of the four;
// sizes 2..16 integers in [1, 65536] (input, hidden..., K) with K in
// [2, 4096]; activation as nn::ParseActivation reads it; dtype "float32" or
// "float64". The model the spec describes must be about as large as the
// file (values <= 16 x the file's values + 2^20) before it is built.
// LoadCalibrationModel builds it (float64, Rng(0), the identity map),
// converts the classifier to the dtype and restores every tensor (names,
// shapes and value domains checked as LoadCheckpoint does), so its
// probabilities equal the saved model's bit for bit. SaveCalibrationModel
// checks that the model is what the spec builds (names, shapes, the
// classifier's dtype) and that a temperature / fcal map has a > 0 (the sign
// of a is fixed when the map is made, not a stored tensor; maps fitted from
// the identity keep a > 0). The activation is not visible in the tensors:
// the spec's word is taken for it. Errors name the file.
#ifndef FLOWTAPE_MODELS_CALIBRATION_MODEL_H_
#define FLOWTAPE_MODELS_CALIBRATION_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/dtype.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "flows/flow.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace flowtape::models {

struct CalibrationModelSpec {
  std::string map = "none";  // none, temperature, fcal, generalized
  std::vector<int64_t> sizes = {784, 256, 256, 10};
  std::string activation = "relu";
  DType dtype = kFloat64;  // the classifier's
  // InvalidArgument naming the first field out of the ranges the file reader
  // enforces (above: map, sizes, activation, dtype), e.g. "sizes[1]: want an
  // integer in [1, 65536], got 0". MakeCalibrationModel,
  // SaveCalibrationModel and the reader call it.
  absl::Status Validate() const;
};

class CalibratedClassifier : public nn::Module {
 public:
  // map == nullptr: no calibration (q = p).
  CalibratedClassifier(std::shared_ptr<nn::MLP> classifier,
                       std::shared_ptr<flows::Flow> map);
  // x [N, input] (any dtype) -> q [N, K], float64. A map whose Forward
  // fails (its FlowResult::status) gives NaN rows here and its error from
  // TryProbabilities; code that scores data it did not make calls that.
  Tensor Probabilities(const Tensor& x) const;
  absl::StatusOr<Tensor> TryProbabilities(const Tensor& x) const;
  Tensor LogProbabilities(const Tensor& x) const;
  DType classifier_dtype() const { return classifier_->dtype(); }
  const nn::MLP& classifier() const { return *classifier_; }
  const flows::Flow* map() const { return map_.get(); }

 private:
  // (p or the map's Forward(p)): value q, the map's status.
  flows::FlowResult Pass(const Tensor& x) const;
  std::shared_ptr<nn::MLP> classifier_;
  std::shared_ptr<flows::Flow> map_;
};

// InvalidArgument for a spec that fails spec.Validate().
absl::StatusOr<std::shared_ptr<CalibratedClassifier>> MakeCalibrationModel(
    const CalibrationModelSpec& spec, Rng& rng);

absl::Status SaveCalibrationModel(const std::string& path,
                                  const CalibrationModelSpec& spec,
                                  const CalibratedClassifier& model);
absl::StatusOr<std::shared_ptr<CalibratedClassifier>> LoadCalibrationModel(
    const std::string& path);

std::string CalibrationModelSpecToJson(const CalibrationModelSpec& spec);
absl::StatusOr<CalibrationModelSpec> CalibrationModelSpecFromJson(
    const std::string& json);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_CALIBRATION_MODEL_H_
