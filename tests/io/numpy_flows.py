"""MAF and RealNVP log-densities in numpy alone, from a state dict in
PyTorch's layout (io/torch_exchange.h), following the definitions that
tools/torch_exchange.py writes as PyTorch modules (flows/made.h,
flows/autoregressive.h, flows/coupling.h, models/zoo.cc):

  Linear:   y = x W^T + b, W [out, in] as torch.nn.Linear.
  MAF:      steps "flow.i.made"; step i's MADE has ord = (1..D) for even i,
            (D..1) for odd i; hidden degrees cyclic from lo (lo = 1, or 0
            with a context; {0} when D = 1) over [lo, D-1], sorted
            ascending; masks [out, in]: input/hidden j -> hidden k iff
            m(k) >= m(j), hidden k -> output column P i + p iff
            ord(i) > m(k); ReLU; hidden layer l adds c Wc_l^T (no bias)
            before the activation; output column 2i = mu_i, 2i+1 =
            alpha_i; z = (x - mu) exp(-alpha), log det = -sum alpha.
  RealNVP:  steps "flow.i.conditioner"; a = the first ceil(D/2) features
            (the others for odd i), b = the rest, both ascending; MLP
            [x_a, c] -> hidden (ReLU) -> column 2k = t_k, 2k+1 = r_k for
            the k-th feature of b; s = 3 tanh(r / 3), z_b = x_b exp(s) + t,
            z_a = x_a, log det = sum s.
  Base:     log p(x) = -|z|^2 / 2 - D log(2 pi) / 2 + sum of the log dets;
            the constant is the buffer "base.log_norm".

log_prob(family, config, tensors, x, c, defect) computes log p(x | c); it
reads each tensor by name with its expected shape and returns the names it
used. `defect` computes a wrong mapping on purpose, to show that the
comparison with flowtape can see it:
  "layout"      linear weights read as [in, out] (the bytes not transposed)
  "interleave"  the two parameters per feature read as halves, not pairs
  "order"       MAF: every step in the natural order; RealNVP: no flip
buffers() gives the buffers by their rules (check_buffers compares a state
dict with them); random_state() makes a whole state dict in numpy.
"""
import math

import numpy as np

DEFECTS = ("layout", "interleave", "order")


class Tensors:
    """Reads a state dict by name and shape, recording what was read."""

    def __init__(self, tensors, defect):
        self.tensors, self.defect, self.used = tensors, defect, set()

    def get(self, name, shape):
        if name not in self.tensors:
            raise ValueError("missing tensor " + name)
        t = self.tensors[name]
        if t.shape != tuple(shape):
            raise ValueError("%s: shape %s, expected %s" %
                             (name, t.shape, tuple(shape)))
        self.used.add(name)
        return t

    def weight(self, name, n_out, n_in):
        w = self.get(name, (n_out, n_in))
        if self.defect == "layout":
            return np.ascontiguousarray(w).reshape(n_in, n_out).T
        return w


def made_degrees(d, hidden, context_dim, reverse):
    """ord [D] and the degrees of each hidden layer (made.h)."""
    order = np.arange(d, 0, -1) if reverse else np.arange(1, d + 1)
    lo = min(0 if context_dim > 0 else 1, d - 1)
    degrees = [np.sort(lo + np.arange(h) % (d - lo)) for h in hidden]
    return order, degrees


def made_masks(d, hidden, context_dim, reverse, per_dim):
    """The masks [out, in] of the MADE's layers, input to output."""
    order, degrees = made_degrees(d, hidden, context_dim, reverse)
    masks, prev = [], order
    for deg in degrees:
        masks.append((deg[:, None] >= prev[None, :]).astype(np.float64))
        prev = deg
    out_deg = np.repeat(order, per_dim)
    masks.append((out_deg[:, None] > prev[None, :]).astype(np.float64))
    return order, masks


def pairs(h, n, defect):
    """Splits [N, 2n] into the first and second parameter of n entries."""
    if defect == "interleave":
        return h[:, :n], h[:, n:]
    return h[:, 0::2], h[:, 1::2]


def maf_step(t, prefix, x, c, reverse, hidden, defect):
    d = x.shape[1]
    k = 0 if c is None else c.shape[1]
    _, masks = made_masks(d, hidden, k, reverse and defect != "order", 2)
    h = x
    sizes = [d] + list(hidden) + [2 * d]
    for l, mask in enumerate(masks):
        if l > 0:
            h = np.maximum(h, 0.0)
        name = "%s.layer%d" % (prefix, l)
        w = t.weight(name + ".weight", sizes[l + 1], sizes[l])
        h = h @ (w * mask).T + t.get(name + ".bias", (sizes[l + 1],))
        if l < len(hidden) and c is not None:
            h = h + c @ t.weight("%s.context%d.weight" % (prefix, l),
                                 sizes[l + 1], k).T
    mu, alpha = pairs(h, d, defect)
    return (x - mu) * np.exp(-alpha), -alpha.sum(1)


def coupling_step(t, prefix, x, c, flip, hidden, defect):
    d = x.shape[1]
    flip = flip and defect != "order"
    a = [i for i in range(d) if (i < (d + 1) // 2) != flip]
    b = [i for i in range(d) if i not in a]
    h = x[:, a] if c is None else np.concatenate([x[:, a], c], 1)
    sizes = [h.shape[1]] + list(hidden) + [2 * len(b)]
    for l in range(len(sizes) - 1):
        if l > 0:
            h = np.maximum(h, 0.0)
        name = "%s.layer%d" % (prefix, l)
        h = (h @ t.weight(name + ".weight", sizes[l + 1], sizes[l]).T +
             t.get(name + ".bias", (sizes[l + 1],)))
    shift, r = pairs(h, len(b), defect)
    s = 3.0 * np.tanh(r / 3.0)
    z = x.copy()
    z[:, b] = x[:, b] * np.exp(s) + shift
    return z, s.sum(1)


def log_prob(family, config, tensors, x, c=None, defect=None):
    """log p(x | c) [N] and the set of tensor names read."""
    if defect is not None and defect not in DEFECTS:
        raise ValueError("unknown defect " + defect)
    t = tensors if isinstance(tensors, Tensors) else Tensors(tensors, defect)
    d = x.shape[1]
    if list(config["event"]) != [d]:
        raise ValueError("event %r vs x %s" % (config["event"], x.shape))
    logdet = np.zeros(x.shape[0])
    z = x
    for i in range(config["layers"]):
        if family == "maf":
            z, ld = maf_step(t, "flow.%d.made" % i, z, c, i % 2 == 1,
                             config["hidden"], defect)
        elif family == "realnvp":
            z, ld = coupling_step(t, "flow.%d.conditioner" % i, z, c,
                                  i % 2 == 1, config["hidden"], defect)
        else:
            raise ValueError("no numpy model of " + family)
        logdet = logdet + ld
    log_norm = t.get("base.log_norm", ())
    return -0.5 * (z**2).sum(1) + log_norm + logdet, t.used


def buffers(family, config):
    """The buffers by their rules: the base's constant -D log(2 pi) / 2 and,
    for MAF, each MADE's "order" and masks (made.h)."""
    d = config["event"][0]
    out = {"base.log_norm": np.array(-0.5 * d * math.log(2 * math.pi))}
    if family != "maf":
        return out
    for i in range(config["layers"]):
        order, masks = made_masks(d, config["hidden"],
                                  config.get("context_dim", 0), i % 2 == 1, 2)
        prefix = "flow.%d.made" % i
        out[prefix + ".order"] = order.astype(np.float64)
        for l, mask in enumerate(masks):
            out["%s.layer%d.mask" % (prefix, l)] = mask
    return out


def check_buffers(family, config, tensors):
    """Compares the buffers the log-density does not read with their rules
    (buffers()). Returns (names checked, first mismatch or None)."""
    want = buffers(family, config)
    for name, value in want.items():
        if name not in tensors:
            return set(want), "missing tensor " + name
        tol = 1e-14 if name == "base.log_norm" else 0.0
        if tensors[name].shape != value.shape or not np.all(
                np.abs(tensors[name] - value) <= tol):
            return set(want), name + " differs from its rule"
    return set(want), None


class _Maker(Tensors):
    """Makes each tensor the model reads: N(0, scale^2) entries."""

    def __init__(self, rng, scale):
        super().__init__({}, None)
        self.rng, self.scale = rng, scale

    def get(self, name, shape):
        if name not in self.tensors:
            self.tensors[name] = self.scale * self.rng.standard_normal(shape)
        return super().get(name, shape)


def random_state(family, config, rng, scale=0.3):
    """A full state dict in PyTorch's layout made in numpy: parameters
    N(0, scale^2), buffers by their rules."""
    made = _Maker(rng, scale)
    d = config["event"][0]
    k = config.get("context_dim", 0)
    log_prob(family, config, made, np.zeros((1, d)),
             np.zeros((1, k)) if k > 0 else None)
    state = dict(made.tensors)
    state.update(buffers(family, config))
    return state
