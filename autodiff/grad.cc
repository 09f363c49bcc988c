#include "autodiff/grad.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "autodiff/check.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape {
namespace {

FLOWTAPE_VECTORIZE_BEGIN
template <typename T>
void AddInto(T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}
FLOWTAPE_VECTORIZE_END

// Adds g into slot (slot = g when empty). Off the tape, a slot that is the
// sole owner of its values takes the sum in place (no new buffer).
void Accumulate(Tensor& slot, Tensor g) {
  if (!slot.defined()) {
    slot = std::move(g);
    return;
  }
  if (!Tape::Get().grad_enabled() && slot.is_constant() &&
      slot.storage() != nullptr && slot.storage().use_count() == 1 &&
      !slot.storage()->requires_grad && slot.shape() == g.shape() &&
      slot.dtype() == g.dtype()) {
    VisitDType(slot.dtype(), [&](auto zero) {
      using T = decltype(zero);
      AddInto(slot.mutable_data<T>(), g.data<T>(), slot.numel());
    });
    return;
  }
  slot = slot + g;
}

// An adjoint of the GradColumns node narrowed to the wanted columns (a
// rule may have computed just those, or a uniform rank-0 adjoint).
Tensor Columns(const Tensor& g, const Shape& full, int64_t begin,
               int64_t width) {
  const Shape want{full[0], width};
  if (g.shape() == want) return g;
  if (g.rank() == 0) return BroadcastTo(g, want);
  FT_CHECK(g.shape() == full, "grad: adjoint ", g.shape().ToString(),
           " is neither the input's ", full.ToString(), " nor its columns ",
           want.ToString());
  return Narrow(g, 1, begin, width);
}

// Runs the backward sweep from `outputs` down to tape id `min_id`. When
// `want_ids` is given, only nodes on a path to one of them are visited and a
// rule computes only the input adjoints that lead there (OpContext::
// needs_grad); otherwise every node that requires grad is (Backward).
// `on_leaf` sees every parameter leaf reached. With column_width >= 0 (one
// wanted id), only those columns of its adjoint are computed (GradColumns).
template <typename OnLeaf>
std::vector<Tensor> Sweep(const std::vector<Tensor>& outputs,
                          const std::vector<Tensor>& grad_outputs,
                          int64_t min_id, bool create_graph, OnLeaf on_leaf,
                          const std::vector<int64_t>* want_ids,
                          int64_t column_begin = 0, int64_t column_width = -1) {
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
  const size_t nwant = want_ids != nullptr ? want_ids->size() : 0;
  std::vector<Tensor> result(nwant);
  if (max_id < min_id) return result;
  std::vector<Tensor> adj(max_id - min_id + 1);

  // Reachability: reach[id] = the node is a wanted input or one of its
  // inputs reaches one (creation order is topological).
  internal::SweepInfo info;
  info.min_id = min_id;
  info.create_graph = create_graph;
  if (column_width >= 0) {
    info.column_id = (*want_ids)[0];
    info.column_begin = column_begin;
    info.column_width = column_width;
  }
  std::vector<uint8_t> reach;
  if (want_ids != nullptr) {
    reach.assign(adj.size(), 0);
    for (int64_t id : *want_ids)
      if (id >= min_id && id <= max_id) reach[id - min_id] = 1;
    for (int64_t id = min_id; id <= max_id; ++id) {
      uint8_t& r = reach[id - min_id];
      if (r) continue;
      const Node* n = tape.node(id);
      if (!n->requires_grad) continue;
      for (int i = 0; i < n->num_inputs && !r; ++i) {
        const Node* in = n->inputs[i];
        r = in->id >= min_id && reach[in->id - min_id];
      }
    }
    info.reach = reach.data();
  }

  bool prev = tape.grad_enabled();
  tape.set_grad_enabled(create_graph);
  for (size_t k = 0; k < outputs.size(); ++k) {
    Node* n = out_nodes[k];
    if (n == nullptr || !n->requires_grad || n->id < min_id) continue;
    if (!reach.empty() && !reach[n->id - min_id]) continue;
    Tensor g = k < grad_outputs.size() && grad_outputs[k].defined()
                   ? grad_outputs[k]
                   : Tensor::Ones(n->shape, n->dtype);
    FT_CHECK(g.shape() == n->shape, "grad: grad_output shape ",
             g.shape().ToString(), " != output shape ", n->shape.ToString());
    FT_CHECK(g.dtype() == n->dtype, "grad: grad_output is ",
             DTypeName(g.dtype()), ", output is ", DTypeName(n->dtype));
    Accumulate(adj[n->id - min_id],
               n->id == info.column_id
                   ? Columns(g, n->shape, column_begin, column_width)
                   : g);
  }
  Tensor gin[8];
  std::vector<Tensor> gin_many;
  for (int64_t id = max_id; id >= min_id; --id) {
    Tensor& g = adj[id - min_id];
    if (!g.defined()) continue;
    if (id == info.column_id) continue;  // the wanted columns: done
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
    const OpContext ctx(n, &info);
    n->backward(ctx, g, out);
    for (int i = 0; i < n->num_inputs; ++i) {
      Node* in = n->inputs[i];
      if (!out[i].defined() || !ctx.needs_grad(i)) continue;
      if (in->id == info.column_id) {
        Accumulate(adj[in->id - min_id],
                   Columns(out[i], in->shape, column_begin, column_width));
        continue;
      }
      FT_CHECK(
          out[i].shape() == in->shape || (!create_graph && out[i].rank() == 0 &&
                                          (n->flags & kEmitsUniformAdjoint)),
          "backward of '", n->op, "': gradient shape ",
          out[i].shape().ToString(), " != input shape ", in->shape.ToString());
      FT_CHECK(out[i].dtype() == in->dtype, "backward of '", n->op,
               "': gradient is ", DTypeName(out[i].dtype()), ", input is ",
               DTypeName(in->dtype));
      Accumulate(adj[in->id - min_id], std::move(out[i]));
    }
    // Free intermediate adjoints early unless someone asked for them.
    if (want_ids == nullptr ||
        std::find(want_ids->begin(), want_ids->end(), id) == want_ids->end())
      g = Tensor();
  }
  tape.set_grad_enabled(prev);
  for (size_t k = 0; k < nwant; ++k) {
    const int64_t id = (*want_ids)[k];
    if (id >= min_id && id <= max_id) result[k] = adj[id - min_id];
  }
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
        [](Node*, const Tensor&) {}, &ids);
  g.resize(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!g[k].defined())
      g[k] = Tensor::Zeros(inputs[k].shape(), inputs[k].dtype());
    if (g[k].shape() != inputs[k].shape())  // a uniform adjoint (NodeFlag)
      g[k] = BroadcastTo(g[k], inputs[k].shape());
  }
  return g;
}

Tensor GradColumns(const std::vector<Tensor>& outputs, const Tensor& x,
                   int64_t begin, int64_t width,
                   const std::vector<Tensor>& grad_outputs, bool create_graph) {
  FT_CHECK(
      x.rank() == 2 && begin >= 0 && width >= 0 && begin + width <= x.dim(1),
      "grad_columns: columns [", begin, ", ", begin + width, ") of ",
      x.shape().ToString());
  Node* n = x.NodeForOp(/*materialize=*/false);
  Tensor g;
  if (n != nullptr && n->requires_grad) {
    const std::vector<int64_t> ids{n->id};
    g = Sweep(
        outputs, grad_outputs, n->id, create_graph, [](Node*, const Tensor&) {},
        &ids, begin, width)[0];
  }
  return g.defined() ? Columns(g, x.shape(), begin, width)
                     : Tensor::Zeros({x.dim(0), width}, x.dtype());
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
    const int64_t n = leaf->shape.numel();
    const auto& gs = g.storage();
    if (s->grad != nullptr && s->grad->dtype != g.dtype())
      s->grad.reset();  // the parameter changed dtype since (Module::To)
    if (s->grad == nullptr && gs != nullptr && gs.use_count() == 1 &&
        gs->size == n) {
      s->grad = gs;  // a temporary nobody else holds: adopt it, no copy
      s->grad->unit_column = -1;  // sums are written into it (not shared)
    } else if (s->grad == nullptr) {
      s->grad = std::make_shared<internal::Storage>(n, g.dtype());
      std::memcpy(s->grad->data, g.raw_data(), DTypeSize(g.dtype()) * n);
    } else {
      VisitDType(g.dtype(), [&](auto zero) {
        using T = decltype(zero);
        AddInto(static_cast<T*>(s->grad->data), g.data<T>(), n);
      });
    }
  };
  Sweep({loss}, {grad_output}, 0, /*create_graph=*/false, on_leaf, nullptr);
}

std::vector<bool> DependsOn(const Tensor& y, const std::vector<Tensor>& xs) {
  std::vector<bool> result(xs.size(), false);
  const Node* top =
      y.requires_grad() ? y.NodeForOp(/*materialize=*/false) : nullptr;
  if (top == nullptr) return result;
  std::vector<int64_t> ids(xs.size(), -1);
  int64_t min_id = top->id + 1;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Node* n = xs[i].requires_grad()
                        ? xs[i].NodeForOp(/*materialize=*/false)
                        : nullptr;
    if (n == nullptr || n->id > top->id) continue;  // recorded after y
    ids[i] = n->id;
    min_id = std::min(min_id, n->id);
  }
  // Depth-first from y over inputs that require grad, down to the oldest x
  // (creation order is topological, so nothing older can lead to one).
  std::vector<uint8_t> seen(top->id - min_id + 1, 0);
  std::vector<const Node*> stack{top};
  while (!stack.empty()) {
    const Node* a = stack.back();
    stack.pop_back();
    if (!a->requires_grad || a->id < min_id || seen[a->id - min_id]) continue;
    seen[a->id - min_id] = 1;
    stack.insert(stack.end(), a->inputs, a->inputs + a->num_inputs);
  }
  for (size_t i = 0; i < xs.size(); ++i)
    result[i] = ids[i] >= 0 && seen[ids[i] - min_id];
  return result;
}

}  // namespace flowtape
