#!/usr/bin/env python3
# Run: apt-get install -y python3-torch; /usr/bin/python3 benchmarks/flows_torch_reference.py [threads]
# Compare with: ./bazelw run --config=opt //benchmarks:flows_bench
# PyTorch CPU reference of flows_bench: one training step (forward, NLL,
# backward, Adam) of RealNVP 2-D (8 affine couplings, MLP 2x64 ReLU, tanh-
# bounded log-scale, alternating half masks, batch 256) and MAF 64-D
# (5 MADEs with 2 x 128 hidden, reversals between, batch 256). float64 to
# match flowtape.
import math, sys, time
import torch
import torch.nn as nn
torch.set_default_dtype(torch.float64)
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
torch.set_num_threads(threads)

class Coupling(nn.Module):
    def __init__(self, flip):
        super().__init__()
        self.flip = flip
        self.net = nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    def forward(self, x):
        a, b = (x[:, 1:], x[:, :1]) if self.flip else (x[:, :1], x[:, 1:])
        h = self.net(a)
        t, r = h[:, :1], h[:, 1:]
        log_s = 3.0 * torch.tanh(r / 3.0)
        b = b * torch.exp(log_s) + t
        z = torch.cat([b, a], 1) if self.flip else torch.cat([a, b], 1)
        return z, log_s.sum(1)

class RealNvp(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Coupling(i % 2 == 1) for i in range(8)])
    def nll(self, x):
        ld = torch.zeros(x.shape[0])
        for l in self.layers:
            x, d = l(x)
            ld = ld + d
        logp = -0.5 * (x ** 2).sum(1) - x.shape[1] * 0.5 * math.log(2 * math.pi)
        return -(logp + ld).mean()

class MaskedLinear(nn.Linear):
    def __init__(self, i, o, mask):
        super().__init__(i, o)
        self.register_buffer("mask", mask)
    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)

class Made(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        deg_in = torch.arange(1, d + 1)
        deg_h = [torch.arange(h) % (d - 1) + 1 for _ in range(2)]
        m1 = (deg_h[0][:, None] >= deg_in[None, :]).double()
        m2 = (deg_h[1][:, None] >= deg_h[0][None, :]).double()
        deg_out = deg_in.repeat(2)
        m3 = (deg_out[:, None] > deg_h[1][None, :]).double()
        self.l1, self.l2, self.l3 = MaskedLinear(d, h, m1), MaskedLinear(h, h, m2), MaskedLinear(h, 2 * d, m3)
        self.d = d
    def forward(self, x):
        h = torch.relu(self.l1(x))
        h = torch.relu(self.l2(h))
        out = self.l3(h)
        return out[:, :self.d], out[:, self.d:]

class Maf(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mades = nn.ModuleList([Made(d, 128) for _ in range(5)])
    def nll(self, x):
        ld = torch.zeros(x.shape[0])
        for i, m in enumerate(self.mades):
            if i > 0:
                x = x.flip(1)
            mu, alpha = m(x)
            x = (x - mu) * torch.exp(-alpha)
            ld = ld - alpha.sum(1)
        logp = -0.5 * (x ** 2).sum(1) - x.shape[1] * 0.5 * math.log(2 * math.pi)
        return -(logp + ld).mean()

def bench(model, x, seconds=3.0):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for _ in range(20):
        opt.zero_grad(); model.nll(x).backward(); opt.step()
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        opt.zero_grad(); model.nll(x).backward(); opt.step(); n += 1
    dt = (time.process_time() - t0) / n
    return dt * 1e3, 1.0 / dt

torch.manual_seed(0)
ms, rate = bench(RealNvp(), torch.randn(256, 2))
print(f"torch {torch.__version__} threads={threads} RealNVP2d: {ms:.2f} ms/step (CPU), {rate:.0f} steps/s")
ms, rate = bench(Maf(64), torch.randn(256, 64))
print(f"torch {torch.__version__} threads={threads} MAF64d:    {ms:.2f} ms/step (CPU), {rate:.0f} steps/s")
