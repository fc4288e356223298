#!/usr/bin/env python3
"""Plot of the warm-failover benchmark: read throughput (relative to the new primary's level
25-35 s after promotion) and shared-buffer hit ratio per second after promotion, each run
thin, the median per mode thick, cold and warm.

    python3 benches/warm_failover_plot.py target/warm_failover/warm_failover.csv docs/warm_failover.png

Needs matplotlib (pip install matplotlib); the benchmark itself does not.
"""

import csv
import math
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    runs = defaultdict(dict)  # (mode, run) -> second -> (tput, hit)
    for row in csv.DictReader(open(src)):
        key = (row["mode"], int(row["run"]))
        runs[key][int(row["second"])] = (float(row["throughput_rel"]), float(row["hit_ratio"]))
    fig, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    colors = {"cold": "tab:red", "warm": "tab:blue"}
    for col, (ax, label) in enumerate(
        zip(axes, ["read throughput / steady (25-35 s)", "shared-buffer hit ratio"])
    ):
        for mode in ["cold", "warm"]:
            series = [v for (m, _), v in sorted(runs.items()) if m == mode]
            if not series:
                continue
            secs = sorted(series[0])
            for s in series:
                ax.plot(secs, [s[x][col] for x in secs], color=colors[mode], alpha=0.25, lw=1)
            med = []
            for x in secs:
                vals = [s[x][col] for s in series if x in s and not math.isnan(s[x][col])]
                med.append(statistics.median(vals) if vals else float("nan"))
            name = "warm failover on" if mode == "warm" else "off (cold)"
            ax.plot(secs, med, color=colors[mode], lw=2.5, label=f"{name}, median of {len(series)}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if col == 0:
            ax.axhline(0.9, color="gray", ls="--", lw=1)
            ax.set_ylim(0, 1.3)
            ax.legend(loc="lower right")
        else:
            ax.set_ylim(0.5, 1.01)
    axes[1].set_xlabel("seconds after promotion (kill -9 of the primary, standby page cache dropped)")
    fig.suptitle("pgsluice warm failover: the new primary's first 35 seconds")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
