// Reverse-mode differentiation over the thread's tape.
//
// Grad(outputs, inputs, grad_outputs) returns sum_k J_k' g_k: the adjoints of
// `inputs` for outputs y_k seeded with g_k (default: ones, i.e. d(sum y_k)).
// With create_graph=true the backward rules are recorded on the tape, so the
// returned gradients are differentiable again (Hessians, double-VJP JVPs).
// Inputs that no output depends on get zeros.
//
// GradColumns(outputs, x, begin, width, grad_outputs) is
// Narrow(Grad(outputs, {x}, grad_outputs)[0], 1, begin, width) for a rank-2
// x, computed for those columns alone where the rule that consumes x can
// (OpContext::wanted_columns): a product's dX = G W' then costs N width k
// multiply-adds instead of N d k. The exact trace's e_i' J reads column i.
//
// Backward(loss) is the training shortcut: it accumulates d(loss)/dp into
// p.grad() for every parameter p that loss depends on (seed: ones). A loss
// computed from parameters with recording off (NoGradScope) aborts; a loss
// with no parameter in it at all (a constant) changes nothing.
//
// DependsOn(y, xs)[i] says whether y is computed from xs[i] through ops
// recorded on this tape, i.e. whether a nonzero d y / d xs[i] can flow
// through the tape (true when y is xs[i]'s own tape value, e.g. the same
// parameter listed twice). Constants, and tensors that do not require
// grad, depend on nothing and nothing depends on them. An op whose rule
// sums several adjoints into one input uses it to avoid counting a path
// twice (the ODE adjoint with parameters computed from other parameters).
#ifndef FLOWTAPE_AUTODIFF_GRAD_H_
#define FLOWTAPE_AUTODIFF_GRAD_H_

#include <vector>

#include "autodiff/tensor.h"

namespace flowtape {

std::vector<Tensor> Grad(const std::vector<Tensor>& outputs,
                         const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {},
                         bool create_graph = false);

Tensor GradColumns(const std::vector<Tensor>& outputs, const Tensor& x,
                   int64_t begin, int64_t width,
                   const std::vector<Tensor>& grad_outputs = {},
                   bool create_graph = false);

void Backward(const Tensor& loss, const Tensor& grad_output = Tensor());

std::vector<bool> DependsOn(const Tensor& y, const std::vector<Tensor>& xs);

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_GRAD_H_
