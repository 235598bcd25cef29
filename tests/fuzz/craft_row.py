#!/usr/bin/env python3
"""craft_row.py - write a fuzz_apply input (mode 1: a frame body) that
carries one hand-made row, for inputs a mutator is unlikely to reach.

The body's header (sender, receiver, schema hash, cursors, sites and
vector) is taken from a generated seed body, so the chunk passes apply's
first checks and continues the receiver's cursor.  The rest is written
here: one stamp group of 1 + 2 * ncols consecutive stamps of site 0, one
table with ncols columns (the table's own types first, INTEGER beyond),
and one row whose columns each carry their own stamp and base (a control
byte per column).

  craft_row.py SEED_BODY OUT [--table T] [--ncols N] [--key K] [--cl CL]
               [--null-col C]

Inputs in tests/fuzz/corpus made with it:
  crash-merge-stamps64   SEED g000-a-empty-c0-body --ncols 64 --key key-015
  crash-apply-intkey3    SEED g000-a-empty-c0-body --table 1 --ncols 3 --key abc
"""
import argparse


def rv(b, i):
    v, s = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


def wv(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def skip_cursor(b, i):
    mode = b[i]
    i += 1
    if mode == 0:  # log: version, seq
        _, i = rv(b, i)
        _, i = rv(b, i)
    else:  # initial: v0, table, key length, key
        _, i = rv(b, i)
        _, i = rv(b, i)
        kl, i = rv(b, i)
        i += kl
    return i


# Column types of fuzz_world.h's tables (1 INTEGER, 2 REAL, 3 TEXT, 4 BLOB).
TYPES = {0: [1, 2, 3, 4, 3, 1], 1: [1, 2, 4], 2: [4]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seed")
    ap.add_argument("out")
    ap.add_argument("--table", type=int, default=0)
    ap.add_argument("--ncols", type=int, default=64)
    ap.add_argument("--key", default="key-015")
    ap.add_argument("--cl", type=int, default=1)
    ap.add_argument("--null-col", type=int, default=-1)
    a = ap.parse_args()
    src = open(a.seed, "rb").read()
    if src[0] & 3 != 1:
        raise SystemExit("the seed must be a body (mode 1)")
    b = src[1:]
    i = skip_cursor(b, skip_cursor(b, 1 + 32 + 8))
    nsites, i = rv(b, i)
    i += 16 * nsites
    for _ in range(nsites):
        _, i = rv(b, i)
    body = bytearray(b[:i])
    nst = 1 + 2 * a.ncols
    body += wv(1) + wv(0) + wv(nst) + wv(1700000100000 << 16)
    body += wv(0) * (nst - 1)
    enc = (TYPES[a.table] + [1] * 64)[: a.ncols]
    body += wv(1) + wv(a.table) + wv(a.ncols) + bytes(enc)
    key = a.key.encode()
    head = 0x01 | 0x02 | 0x04 | 0x80  # table, key length, stamp, controls
    if a.cl != 1:
        head |= 0x08
    body += wv(1) + wv(head) + wv(a.table) + wv(0) + wv(len(key)) + key + wv(0)
    if a.cl != 1:
        body += wv(a.cl)
    for c in range(a.ncols):
        ctl = 0x2 | 0x4 | (0x1 if c == a.null_col else 0)
        body += wv(ctl) + wv(1 + 2 * c) + wv(2 + 2 * c + 1)
        if ctl & 1:
            continue
        t = enc[c]
        if t == 1:
            body += wv(2 * c)
        elif t == 2:
            body += bytes(8)
        else:
            body += wv(1) + b"x"
    open(a.out, "wb").write(bytes([src[0]]) + bytes(body))


if __name__ == "__main__":
    main()
