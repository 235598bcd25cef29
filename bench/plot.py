#!/usr/bin/env python3
"""Turn a bench output into a PNG comparing our figures with the peers.

  python3 bench/plot.py BENCH_OUTPUT OUT.png

Reads the `bench: NAME VALUE UNIT` lines, takes every ratio (unit `x`)
whose peer is named in the line (ratio_vs_lmdb, ratio_vs_sqlite, ...),
and draws them as horizontal bars on a log scale with 1.0 (the peer) and
the target of each figure from DESIGN.md marked.  Needs matplotlib
(Debian: python3-matplotlib).
"""
import sys

# Figure -> (target, True when higher is better).  From DESIGN.md
# section 7 and the issues' targets.
TARGETS = {
    "w1.write.ratio_vs_lmdb": (0.7, True),
    "w1.write.durable.ratio_vs_lmdb": (0.7, True),
    "w1.get.ratio_vs_lmdb": (0.8, True),
    "w1.write.ratio_vs_sqlite": (1.0, True),
    "w1.initial_apply.ratio_vs_sqlite": (2.0, True),
    "w1.incremental_apply.ratio_vs_lmdb": (0.7, True),
    "w1.wire.ratio_vs_sqlite": (0.85, False),
    "w1.wire_zstd3.ratio_vs_sqlite_zstd3": (1.0, False),
    "w2.wire_zstd3.ratio_vs_sqlite_zstd3": (0.5, False),
    "decode.ratio_vs_sqlite_iter": (2.0, True),
    "w1.sync_tcp.ratio_vs_sqlite": (1.5, True),
    "incremental_sync.ratio_vs_local_commit": (3.0, False),
    "incremental_sync.wire_ratio": (1.2, False),
}


def read(path):
    figs, machine = {}, ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[0] != "bench:":
                continue
            if parts[1] == "machine":
                machine = " ".join(parts[2:])
                continue
            try:
                figs[parts[1]] = (float(parts[2]), parts[3] if len(parts) > 3 else "")
            except ValueError:
                pass
    return figs, machine


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    figs, machine = read(argv[1])
    names = [n for n in TARGETS if n in figs]
    names += sorted(n for n, (v, u) in figs.items()
                    if u == "x" and n not in TARGETS and "ratio_vs" in n)
    if not names:
        sys.stderr.write("plot.py: no ratio lines in %s\n" % argv[1])
        return 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    values = [figs[n][0] for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.6))
    colors = []
    for n, v in zip(names, values):
        t = TARGETS.get(n)
        if t is None:
            colors.append("#9aa5b1")  # no target: shown for reference
            continue
        ok = v >= t[0] if t[1] else v <= t[0]
        colors.append("#2a9d8f" if ok else "#e76f51")
    y = range(len(names))
    ax.barh(list(y), values, color=colors)
    for i, n in enumerate(names):
        t = TARGETS.get(n)
        if t:
            ax.plot([t[0], t[0]], [i - 0.4, i + 0.4], color="black", lw=2)
        ax.text(values[i] * 1.03, i, "%.2fx" % values[i], va="center", fontsize=8)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("ours / peer in the same run; black tick: target "
                  "(green met, red not; grey: none); bytes and times: lower is better",
                  fontsize=8)
    ax.set_title("sync against raw LMDB and SQLite + session - %s" % machine,
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
