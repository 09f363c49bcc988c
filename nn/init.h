// Parameter initialisers. For a weight of fan_in x fan_out:
//   XavierUniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))   (Glorot 2010)
//   HeNormal:      N(0, 2 / fan_in)                             (He 2015)
//   Zeros.
// Shapes: a [fan_in, fan_out] matrix, or a conv kernel [Cout, Cin, KH, KW]
// with fan_in = Cin*KH*KW and fan_out = Cout*KH*KW.
#ifndef FLOWTAPE_NN_INIT_H_
#define FLOWTAPE_NN_INIT_H_

#include "autodiff/tensor.h"

namespace flowtape::nn {

Tensor XavierUniform(const Shape& shape, Rng& rng);
Tensor HeNormal(const Shape& shape, Rng& rng);
inline Tensor Zeros(const Shape& shape) { return Tensor::Zeros(shape); }

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_INIT_H_
