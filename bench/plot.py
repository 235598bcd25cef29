#!/usr/bin/env python3
"""Draw bench runs as a PNG: where the library wins and loses against its peers.

  python3 bench/plot.py RUN.out [RUN.out ...] OUT.png

Reads the `bench: NAME VALUE UNIT` lines of one or more runs of the bench
and takes every ratio (unit `x`) whose peer the line names (ratio_vs_lmdb,
ratio_vs_sqlite, ...).  Two panels, so that a reader sees at once which
way is better: speed (ours / peer, higher is better) and bytes or time
(ours / peer, lower is better).  Each figure is a dot at the median of
the runs with a line from the lowest to the highest run (the spread of
this shared machine), the peer at 1.0, and the target from DESIGN.md and
the issues as a black tick; green when the median meets it, red when not,
grey when there is none.  Needs matplotlib (Debian: python3-matplotlib).
"""
import statistics
import sys

# Figure -> (target, True when higher is better, label).  From DESIGN.md
# section 7 and bench/README.md.
TARGETS = {
    "w1.write.ratio_vs_lmdb": (0.7, True, "W1 writes vs raw LMDB"),
    "w1.write.durable.ratio_vs_lmdb": (0.8, True, "W1 durable writes vs raw LMDB"),
    "w1.get.ratio_vs_lmdb": (0.9, True, "W1 point gets vs raw LMDB"),
    "w1.incremental_apply.ratio_vs_lmdb": (0.85, True, "incremental apply vs LMDB puts"),
    "changes.ratio_vs_lmdb_scan": (0.1, True, "reading 100k changes as a set vs an LMDB scan"),
    "changes.version_order.ratio_vs_lmdb_scan": (None, True, "reading 100k changes in version order vs an LMDB scan"),
    "counter.add.ratio_vs_put": (0.8, True, "counter adds vs integer puts"),
    "w1.write.history.ratio_vs_plain": (0.7, True, "W1 writes with history vs without"),
    "durable.group4.ratio_vs_lmdb": (2.5, True, "4 threads' durable commits, group commit vs LMDB"),
    "w1.write.ratio_vs_sqlite": (1.0, True, "W1 writes vs SQLite"),
    "w1.write.durable.ratio_vs_sqlite": (None, True, "W1 durable writes vs SQLite"),
    "w1.initial_apply.ratio_vs_sqlite": (2.0, True, "initial apply vs SQLite changeset"),
    "decode.ratio_vs_sqlite_iter": (2.0, True, "decode vs SQLite changeset iterator"),
    "w1.sync_tcp.ratio_vs_sqlite": (1.5, True, "initial sync over TCP vs SQLite"),
    "w1.sync_rtt100.ratio_vs_direct": (0.5, True, "sync over a 100 ms link vs straight"),
    "w1.sync_tcp_authorized.ratio_vs_unauthorized": (0.9, True, "push with a write check vs without"),
    "w1.sync_tls.ratio_vs_tcp": (0.8, True, "sync over TLS vs plain TCP"),
    "w1.sync_mqtt.ratio_vs_tcp": (0.5, True, "sync through MQTT vs TCP"),
    "pg.replica_to_pg.ratio_vs_copy": (0.5, True, "PostgreSQL bridge vs COPY"),
    "w1.file.ratio_vs_lmdb": (1.15, False, "W1 file vs raw LMDB"),
    "w1.file_after_gc.ratio_vs_lmdb": (1.3, False, "W1 file, half deleted and collected, vs raw LMDB"),
    "w1.file_after_compact.ratio_vs_lmdb": (1.2, False, "W1 file after compaction vs raw LMDB"),
    "w1.wire.ratio_vs_sqlite": (0.85, False, "W1 bytes vs SQLite changeset"),
    "w1.wire_zstd1.ratio_vs_sqlite_zstd1": (None, False, "W1 bytes, zstd 1, vs SQLite"),
    "w1.wire_zstd3.ratio_vs_sqlite_zstd3": (1.0, False, "W1 bytes, zstd 3, vs SQLite"),
    "w1.update1.wire.ratio_vs_sqlite": (None, False, "1-column updates, bytes vs SQLite"),
    "w1.update1.wire_zstd3.ratio_vs_sqlite_zstd3": (None, False, "1-column updates, zstd 3, vs SQLite"),
    "w1.update4.wire.ratio_vs_sqlite": (None, False, "4-column updates, bytes vs SQLite"),
    "w1.update4.wire_zstd3.ratio_vs_sqlite_zstd3": (None, False, "4-column updates, zstd 3, vs SQLite"),
    "w2.wire.ratio_vs_sqlite": (None, False, "W2 bytes vs SQLite"),
    "w2.wire_zstd3.ratio_vs_sqlite_zstd3": (0.5, False, "W2 bytes, zstd 3, vs SQLite"),
    "w2.wire_zstd3_10.ratio_vs_sqlite_zstd3": (0.6, False, "W2 10-row frames, zstd 3, vs SQLite"),
    "w2.session_zstd3_10.ratio_vs_sqlite_zstd3": (0.6, False, "W2 10-row frames in a session vs SQLite"),
    "counter.fold.pull_ratio_vs_before": (None, False, "a new device's pull after a fold vs before"),
    "w2.live.wire.ratio_vs_sqlite": (None, False, "W2 live bytes vs SQLite"),
    "w2.live.wire_zstd3.ratio_vs_sqlite_zstd3": (None, False, "W2 live bytes, zstd 3, vs SQLite"),
    "incremental_sync.ratio_vs_local_commit": (3.0, False, "incremental sync time vs local commit"),
    "incremental_sync.wire_ratio": (1.2, False, "incremental sync bytes vs its frames"),
}

LOWER_WORDS = ("wire", "bytes", "file", "size", "local_commit")


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


def describe(name):
    """(target or None, higher is better, label) of a ratio line."""
    if name in TARGETS:
        return TARGETS[name]
    lower = any(w in name for w in LOWER_WORDS)
    return (None, not lower, name)


def panel(ax, rows, title, plt):
    """One panel: rows of (label, values, target, higher)."""
    import matplotlib.ticker
    for i, (label, vals, target, higher) in enumerate(rows):
        med = statistics.median(vals)
        if target is None:
            color = "#8d99a6"
        else:
            color = "#2a9d8f" if (med >= target if higher else med <= target) else "#d1495b"
        ax.plot([min(vals), max(vals)], [i, i], color=color, lw=2.5, alpha=0.55,
                solid_capstyle="round")
        ax.plot([med], [i], "o", color=color, ms=7)
        if target is not None:
            ax.plot([target, target], [i - 0.32, i + 0.32], color="black", lw=2)
        spread = "" if len(vals) == 1 else "  (%.2f-%.2f)" % (min(vals), max(vals))
        ax.annotate("%.2fx%s" % (med, spread), (max(vals), i), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(list(range(len(rows))))
    ax.set_yticklabels([r[0] for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    lo = min(min(r[1]) for r in rows)
    hi = max(max(r[1]) for r in rows)
    tg = [r[2] for r in rows if r[2] is not None]
    lo = min([lo] + tg + [1.0]) / 1.4
    hi = max([hi] + tg + [1.0]) * 2.2
    ax.set_xlim(lo, hi)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="x", which="major", color="#e5e5e5")


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    runs, machine = [], ""
    for path in argv[1:-1]:
        figs, m = read(path)
        runs.append(figs)
        machine = machine or m
    names = [n for n in TARGETS if any(n in r for r in runs)]
    names += sorted({n for r in runs for n, (v, u) in r.items()
                     if u == "x" and n not in TARGETS and "ratio_vs" in n})
    if not names:
        sys.stderr.write("plot.py: no ratio lines in %s\n" % " ".join(argv[1:-1]))
        return 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed, size = [], []
    for n in names:
        target, higher, label = describe(n)
        vals = [r[n][0] for r in runs if n in r]
        (speed if higher else size).append((label, vals, target, higher))
    panels = [(rows, t) for rows, t in (
        (speed, "speed: ours / peer, higher is better"),
        (size, "bytes and time: ours / peer, lower is better")) if rows]
    heights = [len(rows) + 1.5 for rows, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 0.36 * sum(heights) + 1.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (rows, title) in zip(axes[:, 0], panels):
        panel(ax, rows, title, plt)
    fig.suptitle("sync against raw LMDB and SQLite + session, %d run%s: dot = median, "
                 "line = lowest to highest run, black tick = target\n%s"
                 % (len(runs), "" if len(runs) == 1 else "s", machine),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(argv[-1], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
