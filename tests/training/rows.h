// Data the training tests share: correlated, shifted 4-D rows (one column
// squared, so not Gaussian) and a train/validation split of them.
//   Rows(n, seed): [n, 4] float64, x1 = 0.8 x0 + 0.3 e1 + 1, x2 = 2 e2 - 3,
//     x3 = e3^2, with x0, e1, e2, e3 ~ N(0, 1) from Rng(seed).
//   RowsData(): 512 training rows (seed 1), 100 validation rows (seed 2).
#ifndef FLOWTAPE_TESTS_TRAINING_ROWS_H_
#define FLOWTAPE_TESTS_TRAINING_ROWS_H_

#include <cstdint>

#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "training/train.h"

namespace flowtape::training::fixtures {

inline Tensor Rows(int64_t n, uint64_t seed) {
  Rng rng(seed);
  Tensor x = Tensor::Randn(Shape{n, 4}, rng);
  double* p = x.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    p[4 * i + 1] = 0.8 * p[4 * i] + 0.3 * p[4 * i + 1] + 1.0;
    p[4 * i + 2] = 2.0 * p[4 * i + 2] - 3.0;
    p[4 * i + 3] = p[4 * i + 3] * p[4 * i + 3];
  }
  return x;
}

inline TrainData RowsData() {
  TrainData d;
  d.train = Rows(512, 1);
  d.val = Rows(100, 2);
  return d;
}

}  // namespace flowtape::training::fixtures

#endif  // FLOWTAPE_TESTS_TRAINING_ROWS_H_
