#!/usr/bin/python3
"""Reads flowtape's exports with numpy alone and checks them against the
formats' documentation (io/safetensors.h, io/torch_exchange.h,
nn/checkpoint.h, models/model_spec.h).

  numpy_reader.py DIR FAMILY [TOOL]

DIR holds model.safetensors, model.ftm and batch.safetensors from
`torch_exchange export` (TOOL: that binary). Checks:
  - safetensors: 8-byte little-endian header length, a JSON header padded
    to a multiple of 8, F64 entries whose data_offsets tile the buffer;
  - model.ftm (checkpoint version 2): magic, version 2, zero flags, payload
    length, CRC-32 = zlib.crc32(payload), metadata "model" = the spec (the
    same JSON as the safetensors' "flowtape.model"), every tensor;
  - the mapping: the safetensors names are the checkpoint's with
    "buffer/" dropped; linear weights and masks (MADE layers and context
    maps, MLP layers) are the transposes, everything else is identical,
    value for value;
  - MAF and RealNVP: log p(x | c) of the batch computed in numpy from the
    safetensors alone (numpy_flows.py: the documented mapping, every
    tensor used or checked, MADE masks and orderings equal to the degree
    rule) equals flowtape's "log_prob" to 1e-10 in float64, and each
    wrong mapping of numpy_flows.DEFECTS (weights not transposed, MADE or
    coupling parameters de-interleaved, orderings or splits not
    alternated) misses it by more than 1e-7;
  - with TOOL, MAF and RealNVP the other way: a state dict made in numpy
    (numpy_flows.random_state) and a batch, scored by `TOOL logprob`
    (which imports the weights), give numpy_flows.py's log p to 1e-10.
Prints one line per check group and exits 1 on the first failure.
"""
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np

# numpy_flows.py beside this file (its runfiles copy, not the symlink's
# target, which Python's own sys.path[0] would give).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_flows  # noqa: E402

TOLERANCE = 1e-10  # float64 log-probabilities

LINEAR = re.compile(r"(made\.(layer|context)\d+\.(weight|mask)|"
                    r"conditioner\.layer\d+\.weight)$")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def read_safetensors(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    if n % 8 != 0:
        fail("%s: header length %d is not a multiple of 8" % (path, n))
    header = json.loads(b[8:8 + n].decode("utf-8"))
    data = b[8 + n:]
    meta = header.pop("__metadata__", {})
    spans = sorted((v["data_offsets"], k) for k, v in header.items())
    at = 0
    for (begin, end), name in spans:
        if begin != at:
            fail("%s: %s starts at %d, not %d" % (path, name, begin, at))
        at = end
    if at != len(data):
        fail("%s: tensors cover %d of %d bytes" % (path, at, len(data)))
    out = {}
    for k, v in header.items():
        if v["dtype"] != "F64":
            fail("%s: %s is %s" % (path, k, v["dtype"]))
        begin, end = v["data_offsets"]
        out[k] = np.frombuffer(data[begin:end], dtype="<f8").reshape(v["shape"])
    return out, meta


def write_safetensors(path, tensors, meta=None):
    header, chunks, at = {}, [], 0
    for name, t in tensors.items():
        raw = np.ascontiguousarray(t, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(np.shape(t)),
                        "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def read_checkpoint(path):
    b = open(path, "rb").read()
    if b[:8] != b"FTCKPT\x00\x01":
        fail("%s: bad magic" % path)
    version, flags, size, checksum = struct.unpack("<IIQQ", b[8:32])
    payload = b[32:]
    if (version, flags, size) != (2, 0, len(payload)):
        fail("%s: header %r" % (path, (version, flags, size)))
    if checksum != zlib.crc32(payload):
        fail("%s: checksum %#x, zlib.crc32 %#x" %
             (path, checksum, zlib.crc32(payload)))
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, payload, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def raw(n):
        nonlocal pos
        pos += n
        return payload[pos - n:pos]

    meta = {}
    for _ in range(take("Q")[0]):
        key = raw(take("I")[0]).decode("utf-8")
        meta[key] = raw(take("Q")[0]).decode("utf-8")
    tensors = {}
    for _ in range(take("Q")[0]):
        name = raw(take("I")[0]).decode("utf-8")
        dtype, rank = take("II")
        dims = take("%dq" % rank)
        count = int(np.prod(dims, dtype=np.int64))
        width = 4 if dtype == 0 else 8
        values = np.frombuffer(raw(width * count),
                               dtype="<f4" if dtype == 0 else "<f8")
        tensors[name] = values.reshape(dims)
    if pos != len(payload):
        fail("%s: %d bytes left" % (path, len(payload) - pos))
    return tensors, meta


def main():
    d, family = sys.argv[1], sys.argv[2]
    st, st_meta = read_safetensors(d + "/model.safetensors")
    ck, ck_meta = read_checkpoint(d + "/model.ftm")
    spec = json.loads(ck_meta["model"])
    if spec != json.loads(st_meta["flowtape.model"]):
        fail("the two files describe different models")
    if spec["family"] != family or spec["format"] != "flowtape.model":
        fail("spec %r" % spec)
    print("formats: safetensors and checkpoint v2 (zlib.crc32 agrees) parse; "
          "family " + family)
    names = {n[len("buffer/"):] if n.startswith("buffer/") else n: n
             for n in ck}
    if set(names) != set(st):
        fail("names differ: %r" % (set(names) ^ set(st)))
    transposed = 0
    for name, ours in ((n, ck[full]) for n, full in names.items()):
        theirs = st[name]
        if LINEAR.search(name):
            transposed += 1
            if ours.ndim != 2 or theirs.shape != ours.T.shape:
                fail("%s: %s vs ours %s" % (name, theirs.shape, ours.shape))
            ours = ours.T
        if theirs.shape != ours.shape or not np.array_equal(
                theirs, ours.astype("<f8")):
            fail("%s: values or shape differ" % name)
    print("mapping: %d tensors, %d transposed, the rest identical" %
          (len(st), transposed))
    if transposed == 0 and family in ("maf", "realnvp"):
        fail("no linear weight found")
    batch, _ = read_safetensors(d + "/batch.safetensors")
    x, want = batch["x"], batch["log_prob"]
    if want.shape != (x.shape[0],) or not np.all(np.isfinite(want)):
        fail("batch")
    if family not in ("maf", "realnvp"):
        print("batch: %d log-probabilities" % want.shape[0])
        return
    check_log_prob(family, spec["config"], st, x, batch.get("context"), want)
    if len(sys.argv) > 3:
        check_import(sys.argv[3], d, family, st_meta["flowtape.model"],
                     spec["config"])


def check_import(tool, d, family, spec_json, config):
    """The other direction: weights made in numpy (PyTorch's layout), a
    batch, `TOOL logprob` imports them; its log-probabilities must equal
    numpy_flows.py's to the same tolerance."""
    rng = np.random.default_rng(7)
    state = numpy_flows.random_state(family, config, rng)
    n, k = 32, config.get("context_dim", 0)
    batch = {"x": rng.standard_normal((n, config["event"][0]))}
    if k > 0:
        batch["context"] = rng.standard_normal((n, k))
    want, _ = numpy_flows.log_prob(family, config, state, batch["x"],
                                   batch.get("context"))
    write_safetensors(d + "/numpy.safetensors", state,
                      {"flowtape.model": spec_json})
    write_safetensors(d + "/numpy_batch.safetensors", batch)
    run = subprocess.run([tool, "logprob",
                          "--model=%s/numpy.safetensors" % d,
                          "--batch=%s/numpy_batch.safetensors" % d,
                          "--out=%s/numpy_result.safetensors" % d])
    if run.returncode != 0:
        fail("%s logprob exited %d" % (tool, run.returncode))
    got, _ = read_safetensors(d + "/numpy_result.safetensors")
    diff = np.max(np.abs(got["log_prob"] - want))
    if got["log_prob"].shape != want.shape or not diff <= TOLERANCE:
        fail("flowtape's log p of numpy's %s weights differs by %.3g" %
             (family, diff))
    print("import: numpy-made %s weights (%d tensors) give flowtape numpy's "
          "log p, max |diff| %.3g (max |log p| %.3g)" %
          (family, len(state), diff, np.max(np.abs(want))))


def check_log_prob(family, config, st, x, c, want):
    """flowtape's log-probabilities against numpy_flows.py's, computed from
    the safetensors alone."""
    try:
        got, used = numpy_flows.log_prob(family, config, st, x, c)
    except ValueError as e:
        fail("numpy %s: %s" % (family, e))
    checked, wrong = numpy_flows.check_buffers(family, config, st)
    if wrong:
        fail(wrong)
    if set(st) - used - checked:
        fail("tensors the numpy %s does not use: %r" %
             (family, sorted(set(st) - used - checked)))
    diff = np.max(np.abs(got - want))
    if not diff <= TOLERANCE:
        fail("numpy %s log p differs from flowtape's by %.3g (tolerance %g)" %
             (family, diff, TOLERANCE))
    print("log p: numpy %s from the safetensors = flowtape's on %d samples, "
          "max |diff| %.3g (max |log p| %.3g)" %
          (family, x.shape[0], diff, np.max(np.abs(want))))
    # Each defect of the mapping must move the log-probabilities well past
    # the tolerance, or the comparison above could not see it.
    for defect in numpy_flows.DEFECTS:
        try:
            bad, _ = numpy_flows.log_prob(family, config, st, x, c, defect)
        except ValueError:
            continue  # the wrong mapping does not even fit the shapes
        moved = np.max(np.abs(bad - want))
        if not moved > 1e3 * TOLERANCE:
            fail("defect %r moves log p by only %.3g" % (defect, moved))
    print("defects %s each fail the shapes or move log p past the "
          "tolerance" %
          ", ".join(numpy_flows.DEFECTS))


if __name__ == "__main__":
    main()
