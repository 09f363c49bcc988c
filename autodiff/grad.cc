#include "autodiff/grad.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape {
namespace {

// Adds g into slot (slot = g when empty).
void Accumulate(Tensor& slot, Tensor g) {
  slot = slot.defined() ? slot + g : std::move(g);
}

// Runs the backward sweep from `outputs` down to tape id `min_id`, visiting
// only nodes that require grad. `on_leaf` sees every parameter leaf reached.
template <typename OnLeaf>
std::vector<Tensor> Sweep(const std::vector<Tensor>& outputs,
                          const std::vector<Tensor>& grad_outputs,
                          int64_t min_id, bool create_graph, OnLeaf on_leaf,
                          const std::vector<int64_t>& want_ids) {
  Tape& tape = Tape::Get();
  // A parameter output (e.g. passed through a no-op Reshape) is its own leaf:
  // the same node its inputs get, so d p / d p = 1.
  std::vector<Node*> out_nodes;
  int64_t max_id = -1;
  for (const Tensor& y : outputs) {
    out_nodes.push_back(y.defined() ? y.NodeForOp(/*materialize=*/false)
                                    : nullptr);
    if (Node* n = out_nodes.back()) max_id = std::max(max_id, n->id);
  }
  std::vector<Tensor> adj(max_id >= min_id ? max_id - min_id + 1 : 0);
  std::vector<Tensor> result(want_ids.size());
  if (adj.empty()) return result;

  bool prev = tape.grad_enabled();
  tape.set_grad_enabled(create_graph);
  for (size_t k = 0; k < outputs.size(); ++k) {
    Node* n = out_nodes[k];
    if (n == nullptr || !n->requires_grad || n->id < min_id) continue;
    Tensor g = k < grad_outputs.size() && grad_outputs[k].defined()
                   ? grad_outputs[k]
                   : Tensor::Ones(n->shape);
    FT_CHECK(g.shape() == n->shape, "grad: grad_output shape ",
             g.shape().ToString(), " != output shape ", n->shape.ToString());
    Accumulate(adj[n->id - min_id], g);
  }
  Tensor gin[8];
  std::vector<Tensor> gin_many;
  for (int64_t id = max_id; id >= min_id; --id) {
    Tensor& g = adj[id - min_id];
    if (!g.defined()) continue;
    Node* n = tape.node(id);
    if (g.shape() != n->shape && !(n->flags & kTakesUniformAdjoint))
      g = BroadcastTo(g, n->shape);
    if (n->leaf_storage != nullptr) on_leaf(n, g);
    if (n->backward == nullptr) continue;
    Tensor* out = gin;
    if (n->num_inputs > 8) {
      gin_many.assign(n->num_inputs, Tensor());
      out = gin_many.data();
    } else {
      for (int i = 0; i < n->num_inputs; ++i) gin[i] = Tensor();
    }
    n->backward(OpContext{n}, g, out);
    for (int i = 0; i < n->num_inputs; ++i) {
      Node* in = n->inputs[i];
      if (!in->requires_grad || in->id < min_id || !out[i].defined()) continue;
      FT_CHECK(
          out[i].shape() == in->shape || (!create_graph && out[i].rank() == 0 &&
                                          (n->flags & kEmitsUniformAdjoint)),
          "backward of '", n->op, "': gradient shape ",
          out[i].shape().ToString(), " != input shape ", in->shape.ToString());
      Accumulate(adj[in->id - min_id], std::move(out[i]));
    }
    // Free intermediate adjoints early unless someone asked for them.
    if (std::find(want_ids.begin(), want_ids.end(), id) == want_ids.end())
      g = Tensor();
  }
  tape.set_grad_enabled(prev);
  for (size_t k = 0; k < want_ids.size(); ++k)
    if (want_ids[k] >= min_id && want_ids[k] <= max_id)
      result[k] = adj[want_ids[k] - min_id];
  return result;
}

}  // namespace

std::vector<Tensor> Grad(const std::vector<Tensor>& outputs,
                         const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs,
                         bool create_graph) {
  std::vector<int64_t> ids;
  int64_t min_id = INT64_MAX;
  for (const Tensor& x : inputs) {
    Node* n = x.NodeForOp(/*materialize=*/false);
    // A parameter never used on this tape gets a fresh leaf: no path, zero.
    int64_t id = n != nullptr && n->requires_grad ? n->id : -1;
    ids.push_back(id);
    if (id >= 0) min_id = std::min(min_id, id);
  }
  std::vector<Tensor> g;
  if (min_id != INT64_MAX)
    g = Sweep(
        outputs, grad_outputs, min_id, create_graph,
        [](Node*, const Tensor&) {}, ids);
  g.resize(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!g[k].defined()) g[k] = Tensor::Zeros(inputs[k].shape());
    if (g[k].shape() != inputs[k].shape())  // a uniform adjoint (NodeFlag)
      g[k] = BroadcastTo(g[k], inputs[k].shape());
  }
  return g;
}

void Backward(const Tensor& loss, const Tensor& grad_output) {
  FT_CHECK(loss.defined(), "backward: undefined loss");
  FT_CHECK(!loss.is_constant() || loss.requires_grad() ||
               loss.storage() == nullptr || !loss.storage()->unrecorded,
           "backward: loss does not require grad: it was computed with "
           "recording off (under NoGradScope, or from gradients taken without "
           "create_graph)");
  auto on_leaf = [](Node* leaf, const Tensor& g) {
    internal::Storage* s = leaf->leaf_storage;
    int64_t n = leaf->shape.numel();
    const auto& gs = g.storage();
    if (s->grad == nullptr && gs != nullptr && gs.use_count() == 1 &&
        gs->data == g.data() && gs->size == n) {
      s->grad = gs;  // a temporary nobody else holds: adopt it, no copy
    } else if (s->grad == nullptr) {
      s->grad = std::make_shared<internal::Storage>(n);
      std::memcpy(s->grad->data, g.data(), sizeof(double) * n);
    } else {
      const double* src = g.data();
      for (int64_t i = 0; i < n; ++i) s->grad->data[i] += src[i];
    }
  };
  Sweep({loss}, {grad_output}, 0, /*create_graph=*/false, on_leaf, {});
}

}  // namespace flowtape
