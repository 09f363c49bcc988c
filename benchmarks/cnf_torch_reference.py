#!/usr/bin/env python3
# PyTorch + torchdiffeq reference of //benchmarks:cnf_cost_bench: the cost of
# one function evaluation (NFE) of an FFJORD CNF in the forward solve and in
# the adjoint (backward) solve.
#
# Setup (Debian's torch; torchdiffeq is not packaged, so it is imported from
# a source tree given on the command line, e.g. one exported from a git
# mirror of github.com/rtqichen/torchdiffeq):
#   apt-get install -y python3-torch libopenblas0-pthread
#   git --git-dir=MIRROR archive HEAD torchdiffeq | tar -x -C /tmp/tde
#   OPENBLAS_NUM_THREADS=1 \
#   LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread \
#     /usr/bin/python3 benchmarks/cnf_torch_reference.py --torchdiffeq=/tmp/tde \
#     [--threads=1,2] [--dtypes=float32,float64] [--reps=3]
# (or TORCHDIFFEQ_PATH=/tmp/tde). OPENBLAS_NUM_THREADS=1 stops OpenBLAS
# threads from stacking on torch's own intra-op threads (2 cores).
#
# Each case: ConcatSquash d-64-64-d (tanh between layers; FFJORD's
# ConcatSquashLinear: (h W + b) * sigmoid(t w_g + b_g) + t w_b), batch 256,
# x ~ N(0, 1), d = 2 and 64; traces: exact (d VJPs with the unit vectors,
# FFJORD's), exact_closed (flowtape's closed form for two hidden layers:
# with A_l = W_l diag(gate_l) and S_l = tanh' of layer l, tr = rowsum(S_1 *
# (S_2 M')), M = A_2 * (A_3 A_1)'; flows/cnf/dynamics.h), hutchinson (one
# VJP, Gaussian noise drawn once per solve). One "step" is
# FFJORD's training step: odeint_adjoint over t in [0, 1], dopri5,
# rtol = atol = 1e-5, then loss = mean(|z|^2 / 2 - logdet) and backward.
#   forward us/NFE = time of the forward solve / its NFE
#   adjoint us/NFE = time of loss.backward() / the adjoint solve's NFE
# Reported: the least over --reps steps (the least-disturbed one on a
# shared machine; cnf_cost_bench does the same) of wall time and of process
# CPU time (all threads; on a shared machine the CPU column is the
# steadier). The trace VJPs are built with
# create_graph only when the caller records (the adjoint's evaluations), so
# the forward solve does no double-backward bookkeeping (FFJORD's code always
# passes create_graph=True, which costs more).
import argparse
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--torchdiffeq", default=os.environ.get("TORCHDIFFEQ_PATH"),
                   help="directory that contains the torchdiffeq package")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--dims", default="2,64")
    p.add_argument("--traces", default="exact,exact_closed,hutchinson")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    if not a.torchdiffeq:
        sys.exit("give --torchdiffeq=DIR (or TORCHDIFFEQ_PATH)")
    return a


args = parse_args()
sys.path.insert(0, args.torchdiffeq)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torchdiffeq import odeint_adjoint  # noqa: E402


class ConcatSquashLinear(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.layer = nn.Linear(din, dout)
        self.hyper_gate = nn.Linear(1, dout)
        self.hyper_bias = nn.Linear(1, dout, bias=False)

    def forward(self, t, h):
        u = t.reshape(1, 1)
        return self.layer(h) * torch.sigmoid(self.hyper_gate(u)) + self.hyper_bias(u)


class ConcatSquashNet(nn.Module):
    def __init__(self, d, hidden=(64, 64)):
        super().__init__()
        sizes = [d, *hidden, d]
        self.layers = nn.ModuleList(
            ConcatSquashLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, t, z):
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i + 1 < len(self.layers):
                h = torch.tanh(h)
        return h

    def value_and_trace(self, t, z):
        """f and tr(df/dz) per sample in closed form (two hidden layers)."""
        u = t.reshape(1, 1)
        ws, slopes, h = [], [], z
        for i, l in enumerate(self.layers):
            gate = torch.sigmoid(l.hyper_gate(u))
            w = l.layer.weight.t() * gate
            a = h @ w + (l.layer.bias * gate + l.hyper_bias(u))
            ws.append(w)
            if i + 1 < len(self.layers):
                h = torch.tanh(a)
                slopes.append(1 - h * h)
            else:
                h = a
        m = ws[1] * (ws[2] @ ws[0]).t()
        return h, (slopes[0] * (slopes[1] @ m.t())).sum(1)


class CnfField(nn.Module):
    """d/dt [z, l] = [f, tr df/dz] (FFJORD's ODEfunc with the sign of l
    flipped: l(1) is log|det dz(1)/dx|)."""

    def __init__(self, net, trace):
        super().__init__()
        self.net, self.trace, self.eps, self.nfe = net, trace, None, 0
        self.exact = trace != "hutchinson"

    def forward(self, t, state):
        self.nfe += 1
        z = state[0]
        if self.trace == "exact_closed":
            return self.net.value_and_trace(t, z)
        build = torch.is_grad_enabled()  # the adjoint's VJPs need graphs
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = self.net(t, z)
            if self.exact:
                tr = torch.zeros(z.shape[0], dtype=z.dtype)
                for i in range(z.shape[1]):
                    e = torch.zeros_like(z)
                    e[:, i] = 1
                    g = torch.autograd.grad(f, z, e, create_graph=build,
                                            retain_graph=True)[0]
                    tr = tr + g[:, i]
            else:
                g = torch.autograd.grad(f, z, self.eps, create_graph=build,
                                        retain_graph=True)[0]
                tr = (g * self.eps).sum(1)
        return f, tr


def one_step(field, x):
    n = x.shape[0]
    params = tuple(field.parameters())
    times = torch.tensor([0.0, 1.0], dtype=x.dtype)
    field.nfe = 0
    w0, c0 = time.perf_counter(), time.process_time()
    # The noise is part of the pass, as in Cnf::Forward.
    field.eps = torch.randn_like(x) if not field.exact else None
    z, l = odeint_adjoint(field, (x, torch.zeros(n, dtype=x.dtype)), times,
                          rtol=1e-5, atol=1e-5, method="dopri5",
                          adjoint_params=params)
    w1, c1 = time.perf_counter(), time.process_time()
    nfe_fwd = field.nfe
    loss = (0.5 * (z[-1] ** 2).sum(1) - l[-1]).mean()
    field.nfe = 0
    w2, c2 = time.perf_counter(), time.process_time()
    loss.backward()
    w3, c3 = time.perf_counter(), time.process_time()
    nfe_bwd = field.nfe
    for p in params:
        p.grad = None
    return ((w1 - w0) / nfe_fwd, (c1 - c0) / nfe_fwd, (w3 - w2) / nfe_bwd,
            (c3 - c2) / nfe_bwd, nfe_fwd, nfe_bwd)


def main():
    print(f"torch {torch.__version__}, torchdiffeq from {args.torchdiffeq}, "
          f"batch {args.batch}, ConcatSquash d-64-64-d tanh, dopri5 "
          f"rtol=atol=1e-5, adjoint; least of {args.reps} steps")
    print("us per NFE, wall and process CPU (all threads)")
    print(f"{'dtype':8} {'thr':>3} {'d':>3} {'trace':10} {'fwd wall':>9} "
          f"{'fwd cpu':>9} {'adj wall':>9} {'adj cpu':>9} {'NFE fwd':>7} "
          f"{'NFE adj':>7}")
    for threads in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for dname in args.dtypes.split(","):
            dtype = getattr(torch, dname)
            for d in [int(v) for v in args.dims.split(",")]:
                for trace in args.traces.split(","):
                    torch.manual_seed(1)
                    net = ConcatSquashNet(d).to(dtype)
                    field = CnfField(net, trace)
                    x = torch.randn(args.batch, d, dtype=dtype)
                    one_step(field, x)  # warm-up
                    runs = [one_step(field, x) for _ in range(args.reps)]
                    us = [min(r[k] for r in runs) * 1e6 for k in range(4)]
                    print(f"{dname:8} {threads:3d} {d:3d} {trace:10} "
                          + " ".join(f"{v:9.1f}" for v in us)
                          + f" {runs[-1][4]:7d} {runs[-1][5]:7d}", flush=True)


if __name__ == "__main__":
    main()
