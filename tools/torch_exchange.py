#!/usr/bin/python3
"""MAF and RealNVP weights between flowtape and hand-written PyTorch modules.

Not part of `./bazelw test //...` (Debian's python3-torch is large):

  apt-get install -y python3-torch          # brings python3-numpy
  ./bazelw build //tools:torch_exchange
  /usr/bin/python3 tools/torch_exchange.py [--tool bazel-bin/tools/torch_exchange]

For each case (MAF and RealNVP on 5 dimensions, with and without a
context), both directions, in float64:
  flowtape -> PyTorch: `torch_exchange export` writes a model's weights
    (safetensors, PyTorch's layout: io/torch_exchange.h), a batch and
    flowtape's log-probabilities; the PyTorch module loads the weights with
    load_state_dict(strict=True) and scores the batch.
  PyTorch -> flowtape: the PyTorch module is initialised by PyTorch, its
    state_dict saved as safetensors (with the flowtape model description in
    __metadata__), and `torch_exchange logprob` imports it and scores a
    batch drawn by PyTorch.
Prints max |log p_flowtape - log p_torch| per case and exits 1 if any
exceeds 1e-10. The modules below follow flowtape's definitions
(flows/made.h, flows/autoregressive.h, flows/coupling.h, models/zoo.cc):
  MAF: layers MADE-affine steps named flow.0, flow.1, ...; step i's MADE
    has the natural order for even i and the reversed one for odd i (the
    reversals between steps folded into the orderings), sequential hidden
    degrees (in [1, D-1], or [0, D-1] with a context) sorted ascending,
    masks as buffers, ReLU, a bias-free context map per hidden
    layer added before the activation; output column 2i is mu_i, 2i+1 is
    alpha_i; z = (x - mu) exp(-alpha), log det = -sum alpha.
  RealNVP: layers affine couplings flow.i; features a = the first
    ceil(D/2) (the rest when i is odd) condition the others through an MLP
    ([x_a, c] -> hidden (ReLU) -> (t_j, r_j) interleaved per entry j);
    log s = 3 tanh(r / 3),
    z_b = x_b exp(log s) + t.
  Base: standard normal, its log normaliser -D log(2 pi) / 2 a buffer
    (base.log_norm).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
TOLERANCE = 1e-10


# ---- safetensors with numpy (io/safetensors.h) ----
def read_safetensors(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = b[8 + n:]
    out = {}
    for k, v in header.items():
        begin, end = v["data_offsets"]
        dtype = {"F64": "<f8", "F32": "<f4"}[v["dtype"]]
        out[k] = torch.from_numpy(
            np.frombuffer(data[begin:end], dtype=dtype).reshape(v["shape"]).copy())
    return out, meta


def write_safetensors(path, tensors, meta=None):
    header, chunks, at = {}, [], 0
    for k, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float64).numpy().astype("<f8").tobytes()
        header[k] = {"dtype": "F64", "shape": list(t.shape),
                     "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# ---- the models ----
class MaskedLinear(nn.Module):
    def __init__(self, mask):  # mask [out, in]
        super().__init__()
        self.weight = nn.Parameter(torch.empty(mask.shape))
        self.bias = nn.Parameter(torch.empty(mask.shape[0]))
        bound = 1 / math.sqrt(mask.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class Made(nn.Module):
    def __init__(self, d, hidden, per_dim, context_dim, reverse):
        super().__init__()
        order = torch.arange(1, d + 1)
        if reverse:
            order = order.flip(0)
        self.register_buffer("order", order.to(torch.float64))
        lo = min(0 if context_dim > 0 else 1, d - 1)
        prev, self.n = order, len(hidden) + 1
        for l, h in enumerate(hidden):
            deg = (lo + torch.arange(h) % (d - 1 - lo + 1)).sort().values
            self.add_module("layer%d" % l, MaskedLinear(
                (deg[:, None] >= prev[None, :]).to(torch.float64)))
            prev = deg
        out_deg = order.repeat_interleave(per_dim)
        self.add_module("layer%d" % len(hidden), MaskedLinear(
            (out_deg[:, None] > prev[None, :]).to(torch.float64)))
        self.contexts = len(hidden) if context_dim > 0 else 0
        for l in range(self.contexts):
            self.add_module("context%d" % l,
                            nn.Linear(context_dim, hidden[l], bias=False))

    def forward(self, x, c):
        h = x
        for l in range(self.n):
            if l > 0:
                h = torch.relu(h)
            h = getattr(self, "layer%d" % l)(h)
            if l < self.contexts:
                h = h + getattr(self, "context%d" % l)(c)
        return h


class MafStep(nn.Module):
    def __init__(self, d, hidden, context_dim, reverse):
        super().__init__()
        self.made = Made(d, hidden, 2, context_dim, reverse)

    def forward(self, x, c):
        p = self.made(x, c).view(x.shape[0], x.shape[1], 2)
        mu, alpha = p[..., 0], p[..., 1]
        return (x - mu) * torch.exp(-alpha), -alpha.sum(1)


class Mlp(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.n = len(sizes) - 1
        for i in range(self.n):
            self.add_module("layer%d" % i, nn.Linear(sizes[i], sizes[i + 1]))

    def forward(self, h):
        for i in range(self.n):
            h = getattr(self, "layer%d" % i)(h)
            if i + 1 < self.n:
                h = torch.relu(h)
        return h


class Coupling(nn.Module):
    def __init__(self, d, flip, hidden, context_dim):
        super().__init__()
        self.a = [i for i in range(d) if (i < (d + 1) // 2) != flip]
        self.b = [i for i in range(d) if i not in self.a]
        self.conditioner = Mlp([len(self.a) + context_dim] + hidden +
                               [2 * len(self.b)])

    def forward(self, x, c):
        xa, xb = x[:, self.a], x[:, self.b]
        h = self.conditioner(xa if c is None else torch.cat([xa, c], 1))
        t, log_s = h[:, 0::2], 3.0 * torch.tanh(h[:, 1::2] / 3.0)
        z = torch.empty_like(x)
        z[:, self.a], z[:, self.b] = xa, xb * torch.exp(log_s) + t
        return z, log_s.sum(1)


class Model(nn.Module):
    """flowtape's FlowModel: flow steps under "flow.", standard normal base."""

    def __init__(self, family, d, layers, hidden, context_dim):
        super().__init__()
        self.flow = nn.Module()
        self.base = nn.Module()  # standard normal: its normalising constant
        self.base.register_buffer(
            "log_norm", torch.tensor(-0.5 * d * math.log(2 * math.pi)))
        self.steps = []
        for i in range(layers):
            if family == "maf":
                step = MafStep(d, hidden, context_dim, i % 2 == 1)
            else:
                step = Coupling(d, i % 2 == 1, hidden, context_dim)
            self.flow.add_module(str(len(self.steps)), step)
            self.steps.append(step)

    def log_prob(self, x, c):
        logdet = torch.zeros(x.shape[0])
        for step in self.steps:
            x, ld = step(x, c)
            logdet = logdet + ld
        return -0.5 * (x ** 2).sum(1) + self.base.log_norm + logdet


def spec_json(family, d, layers, hidden, context_dim):
    return json.dumps({"format": "flowtape.model", "version": 1,
                       "family": family, "dtype": "float64",
                       "config": {"event": [d], "layers": layers,
                                  "hidden": hidden, "context_dim": context_dim}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="bazel-bin/tools/torch_exchange")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = [("maf", 5, 3, [32, 32], 0), ("maf", 5, 3, [32, 32], 3),
             ("realnvp", 5, 4, [32, 32], 0), ("realnvp", 5, 4, [32, 32], 2)]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for k, (family, d, layers, hidden, ctx) in enumerate(cases):
            spec = spec_json(family, d, layers, hidden, ctx)
            name = "%s D=%d layers=%d hidden=%s context=%d" % (
                family, d, layers, hidden, ctx)
            # flowtape -> PyTorch
            out = os.path.join(tmp, "a%d" % k)
            os.makedirs(out)
            subprocess.run([args.tool, "export", "--spec=" + spec,
                            "--seed=%d" % (k + 1), "--n=%d" % args.n,
                            "--out=" + out], check=True)
            weights, meta = read_safetensors(out + "/model.safetensors")
            assert json.loads(meta["flowtape.model"])["family"] == family
            model = Model(family, d, layers, hidden, ctx)
            model.load_state_dict(weights, strict=True)
            batch, _ = read_safetensors(out + "/batch.safetensors")
            with torch.no_grad():
                lp = model.log_prob(batch["x"], batch.get("context"))
            diff = (lp - batch["log_prob"]).abs().max().item()
            scale = batch["log_prob"].abs().max().item()
            print("flowtape -> torch  %-45s max |diff| %.3g (max |log p| %.3g)"
                  % (name, diff, scale))
            worst = max(worst, diff)
            # PyTorch -> flowtape
            torch.manual_seed(100 + k)
            model = Model(family, d, layers, hidden, ctx)
            x = torch.randn(args.n, d)
            c = torch.randn(args.n, ctx) if ctx > 0 else None
            with torch.no_grad():
                want = model.log_prob(x, c)
            wpath = os.path.join(tmp, "torch%d.safetensors" % k)
            bpath = os.path.join(tmp, "batch%d.safetensors" % k)
            rpath = os.path.join(tmp, "result%d.safetensors" % k)
            write_safetensors(wpath, model.state_dict(),
                              {"flowtape.model": spec})
            write_safetensors(bpath, {"x": x} if c is None
                              else {"x": x, "context": c})
            subprocess.run([args.tool, "logprob", "--model=" + wpath,
                            "--batch=" + bpath, "--out=" + rpath], check=True)
            got, _ = read_safetensors(rpath)
            diff = (got["log_prob"] - want).abs().max().item()
            print("torch -> flowtape  %-45s max |diff| %.3g (max |log p| %.3g)"
                  % (name, diff, want.abs().max().item()))
            worst = max(worst, diff)
    print("worst %.3g (tolerance %g): %s" %
          (worst, TOLERANCE, "OK" if worst <= TOLERANCE else "FAILED"))
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
