#!/usr/bin/python3
"""Reads flowtape's exports with numpy alone and checks them against the
formats' documentation (io/safetensors.h, io/torch_exchange.h,
nn/checkpoint.h, models/model_spec.h).

  numpy_reader.py DIR FAMILY

DIR holds model.safetensors, model.ftm and batch.safetensors from
`torch_exchange export`. Checks:
  - safetensors: 8-byte little-endian header length, a JSON header padded
    to a multiple of 8, F64 entries whose data_offsets tile the buffer;
  - model.ftm (checkpoint version 2): magic, version 2, zero flags, payload
    length, CRC-32 = zlib.crc32(payload), metadata "model" = the spec (the
    same JSON as the safetensors' "flowtape.model"), every tensor;
  - the mapping: the safetensors names are the checkpoint's with
    "buffer/" dropped; linear weights and masks (MADE layers and context
    maps, MLP layers) are the transposes, everything else is identical,
    value for value.
Prints one line per check group and exits 1 on the first failure.
"""
import json
import re
import struct
import sys
import zlib

import numpy as np

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
    if batch["log_prob"].shape != (batch["x"].shape[0],) or not np.all(
            np.isfinite(batch["log_prob"])):
        fail("batch")
    print("batch: %d log-probabilities" % batch["log_prob"].shape[0])


if __name__ == "__main__":
    main()
