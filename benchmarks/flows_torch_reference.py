#!/usr/bin/python3
# Run: apt-get install -y python3-torch libopenblas0-pthread;
#   OPENBLAS_NUM_THREADS=1 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread \
#   /usr/bin/python3 benchmarks/flows_torch_reference.py --threads=1 --dtype=f32
# Compare with: ./bazelw run --config=opt //benchmarks:flows_bench
# Debian's torch calls the system libblas.so.3 (netlib reference BLAS unless
# another is selected): 3-5x slower. With libopenblas0-pthread installed, run
# with OPENBLAS_NUM_THREADS=1 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread
# (OpenBLAS threads on top of torch's OpenMP threads oversubscribe 2 cores).
# PyTorch CPU reference of flows_bench: one training step (forward, NLL,
# backward, Adam) of RealNVP 2-D (8 affine couplings, MLP 2x64 ReLU, tanh-
# bounded log-scale, alternating half masks, batch 256) and MAF 64-D
# (5 MADEs with 2 x 128 hidden, reversals between, batch 256) and Glow
# 1x28x28 (flows/glow.h: 2 levels of squeeze + 4 steps of ActNorm -> LU 1x1
# conv -> affine coupling with a 3x3/1x1/3x3 conv net of 64 channels and
# sigmoid(r + 2) scale; learned conv prior on the factored-out half; batch 16
# of logit-transformed pixels), in float32 or float64 (--dtype), with
# --threads intra-op threads; --maf_batch also times MAF at another batch.
# ms/step is wall time; CPU is the process CPU time (all threads) per step.
import argparse, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F
parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--dtype", choices=["f32", "f64"], default="f64")
parser.add_argument("--maf_batch", type=int, default=0)
parser.add_argument("--seconds", type=float, default=3.0)
parser.add_argument("--models", default="realnvp,maf,glow")
args = parser.parse_args()
torch.set_default_dtype(torch.float32 if args.dtype == "f32" else torch.float64)
threads = args.threads
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
        dt = torch.get_default_dtype()
        m1 = (deg_h[0][:, None] >= deg_in[None, :]).to(dt)
        m2 = (deg_h[1][:, None] >= deg_h[0][None, :]).to(dt)
        deg_out = deg_in.repeat(2)
        m3 = (deg_out[:, None] > deg_h[1][None, :]).to(dt)
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

def squeeze(x):
    # z[n, 4c + 2i + j, h, w] = x[n, c, 2h + i, 2w + j]  (flows/squeeze.h)
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)

def conv(i, o, k, zero=False):
    m = nn.Conv2d(i, o, k, padding=k // 2)
    if zero:
        nn.init.zeros_(m.weight)
    else:
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    nn.init.zeros_(m.bias)
    return m

class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.initialized = False
    def forward(self, x):
        if not self.initialized:  # data-dependent init on the first batch
            with torch.no_grad():
                mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True, unbiased=False)
                self.log_scale.copy_(-torch.log(std + 1e-6))
                self.bias.copy_(-mean * torch.exp(self.log_scale))
            self.initialized = True
        ld = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return x * torch.exp(self.log_scale) + self.bias, ld.expand(x.shape[0])

class InvConvLu(nn.Module):
    # W = P L (U + diag(sign_s exp(log_s))), L and U stored as full masked C x C.
    def __init__(self, c):
        super().__init__()
        q = torch.linalg.qr(torch.randn(c, c))[0]
        p, l, u = torch.linalg.lu(q)
        d = torch.diagonal(u)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(d))
        self.register_buffer("l_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(l * self.l_mask)
        self.upper = nn.Parameter(torch.triu(u, 1))
        self.log_s = nn.Parameter(torch.log(d.abs()))
        self.c = c
    def forward(self, x):
        eye = torch.eye(self.c)
        l = self.lower * self.l_mask + eye
        u = self.upper * self.l_mask.t() + torch.diag(self.sign_s * torch.exp(self.log_s))
        w = self.perm @ l @ u
        ld = self.log_s.sum() * x.shape[2] * x.shape[3]
        return F.conv2d(x, w.view(self.c, self.c, 1, 1)), ld.expand(x.shape[0])

class GlowCoupling(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.ca, self.cb = c // 2, c - c // 2
        self.net = nn.Sequential(conv(self.ca, hidden, 3), nn.ReLU(), conv(hidden, hidden, 1), nn.ReLU(),
                                 conv(hidden, 2 * self.cb, 3, zero=True))
    def forward(self, x):
        a, b = x[:, :self.ca], x[:, self.ca:]
        h = self.net(a)
        shift, log_scale = h[:, :self.cb], F.logsigmoid(h[:, self.cb:] + 2.0)
        z = torch.cat([a, (b + shift) * torch.exp(log_scale)], 1)
        return z, log_scale.flatten(1).sum(1)

class Glow(nn.Module):
    def __init__(self, c=1, levels=2, depth=4, hidden=64):
        super().__init__()
        self.steps, self.priors = nn.ModuleList(), nn.ModuleList()
        for l in range(levels):
            c *= 4
            self.steps.append(nn.ModuleList(
                [m for _ in range(depth) for m in (ActNorm(c), InvConvLu(c), GlowCoupling(c, hidden))]))
            last = l + 1 == levels
            # Learned prior of the factored-out half, started at zero.
            self.priors.append(None if last else conv(c // 2, 2 * (c - c // 2), 3, zero=True))
            if not last:
                c //= 2
    def nll(self, x):
        n = x.shape[0]
        ld, eps_all = torch.zeros(n), []
        for steps, prior in zip(self.steps, self.priors):
            x = squeeze(x)
            for s in steps:
                x, d = s(x)
                ld = ld + d
            if prior is None:
                eps_all.append(x.flatten(1))
                break
            c = x.shape[1]
            kept, eps = x[:, :c // 2], x[:, c // 2:]
            p = prior(kept)
            mu, log_sigma = p[:, :c - c // 2], p[:, c - c // 2:]
            eps_all.append(((eps - mu) * torch.exp(-log_sigma)).flatten(1))
            ld = ld - log_sigma.flatten(1).sum(1)
            x = kept
        z = torch.cat(eps_all, 1)
        logp = -0.5 * (z ** 2).sum(1) - z.shape[1] * 0.5 * math.log(2 * math.pi)
        return -(logp + ld).mean()

def logit_pixels(n, alpha=0.05):
    v = (torch.randint(0, 256, (n, 1, 28, 28)).to(torch.get_default_dtype()) + torch.rand(n, 1, 28, 28)) / 256
    s = alpha + (1 - 2 * alpha) * v
    return torch.log(s) - torch.log1p(-s)

def bench(model, x, seconds=args.seconds):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for _ in range(20):
        opt.zero_grad(); model.nll(x).backward(); opt.step()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        opt.zero_grad(); model.nll(x).backward(); opt.step(); n += 1
    dt, cpu = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
    return dt * 1e3, cpu * 1e3, 1.0 / dt

torch.manual_seed(0)
cases = {"realnvp": [("RealNVP2d", RealNvp, lambda: torch.randn(256, 2))],
         "maf": [("MAF64d", lambda: Maf(64), lambda: torch.randn(256, 64))],
         "glow": [("Glow28x28", Glow, lambda: logit_pixels(16))]}
if args.maf_batch:
    cases["maf"].append((f"MAF64d/{args.maf_batch}", lambda: Maf(64), lambda: torch.randn(args.maf_batch, 64)))
for key in args.models.split(","):
    for name, make, data in cases[key]:
        model, x = make(), data()
        ms, cpu, rate = bench(model, x)
        params = sum(p.numel() for p in model.parameters())
        print(f"torch {torch.__version__} {args.dtype} threads={threads} {name + ':':15} {ms:7.2f} ms/step, "
              f"{cpu:7.2f} ms CPU, {rate:6.1f} steps/s, {params} params")
