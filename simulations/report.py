"""Reports of a finished run: the one-line verdict, ``report.json`` and (with matplotlib) a
coverage plot. The summary itself is made by :func:`simulations.runner.summarise`.

Figures reported:
- convergence: whether all live honest nodes reached one digest, and how long after the heal;
- traffic: frames sent and delivered, copies of an event's payload received per accepted event
  (from the cores' own counters), and hops to full coverage next to log2(N);
- speed: simulated frame deliveries per wall-clock second and the process's peak memory;
- the checker's verdict, with the seed and arguments that replay the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulations.runner import Simulation


def coverage_series(sim: Simulation) -> list[tuple[float, float]]:
    """(time, delivered share): acceptances by honest nodes so far over (honest nodes x valid
    events published so far). Dips while a partition or a crash keeps events from some nodes."""
    w = sim.world
    n_nodes = max(1, len(sim.honest) + w.counters.joins - w.counters.leaves)
    bucket = w.coverage_bucket
    valid = sim.checker.oracle.facts
    born = [0] * len(w.coverage)
    for eid, t in w.first_seen.items():
        if eid in valid:
            b = min(len(born) - 1, int(t / bucket))
            if b >= 0:
                born[b] += 1
    out = []
    acc = 0
    published = 0
    for i, c in enumerate(w.coverage):
        acc += c
        published += born[i]
        if published:
            out.append(((i + 1) * bucket, min(1.0, acc / (n_nodes * published))))
    return out


def summary_line(s: dict[str, Any]) -> str:
    conv = (f"converged {s['converged_after_heal']:.1f}s after heal (bound {s['liveness_bound']:.0f}s)"
            if s["converged"] else f"NOT converged ({s['distinct_digests']} digests, bound {s['liveness_bound']:.0f}s)")
    cpe = s["copies_per_delivered_event"]
    viol = "violations: none" if s["ok"] else "VIOLATIONS: " + ", ".join(f"{k}={v}" for k, v in s["violations"].items())
    rate = s["deliveries_per_wall_second"]
    return (f"seed={s['seed']} nodes={s['nodes']} scenario={s['scenario']} {conv}; "
            f"events={s['events_valid']} frames_sent={s['frames_sent']} "
            f"copies/event={cpe if cpe is not None else '-'} "
            f"hops_max={s['hops'].get('max_hops_max', '-')} (log2 N={s['hops']['log2_n']}); {viol}; "
            f"{rate if rate is not None else '-'} deliveries/s wall "
            f"({s['deliveries_per_cpu_second'] or '-'}/s CPU), peak {s['peak_rss_mb']:.0f} MB; "
            f"trace={str(s['trace_hash'])[:16]}")


def write(sim: Simulation, s: dict[str, Any], out_dir: str | Path,
          timeline: list[tuple[float, int, int]] | None = None, *, plot_png: bool = True) -> list[Path]:
    """report.json and, when matplotlib is installed, coverage.png. ``timeline`` holds
    (virtual time, pending callbacks, open links) samples (see simulations/progress.py)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series = coverage_series(sim)
    data = dict(s)
    data["coverage"] = [[round(t, 3), round(c, 5)] for t, c in series]
    data["fault_windows"] = [[a, b, k] for a, b, k in sim.world.fault_windows]
    data["timeline"] = [[round(t, 3), pending, links] for t, pending, links in timeline or []]
    p = out / "report.json"
    p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    paths = [p]
    png = plot(series, sim.world.fault_windows, s, out / "coverage.png", timeline or []) if plot_png else None
    if png is not None:
        paths.append(png)
    return paths


def nodes_down(windows: list[tuple[float, float, str]]) -> list[tuple[float, int]]:
    """Step series (time, crashed nodes down from then on) from the crash windows."""
    changes: dict[float, int] = {}
    for a, b, kind in windows:
        if kind == "crash":
            changes[a] = changes.get(a, 0) + 1
            changes[b] = changes.get(b, 0) - 1
    out: list[tuple[float, int]] = [(0.0, 0)]
    down = 0
    for t in sorted(changes):
        down += changes[t]
        out.append((t, down))
    return out


def plot_title(s: dict[str, Any]) -> str:
    net = s["net"]
    link = f"loss {net['loss']:g}, dup {net['dup']:g}, reorder {net['reorder']:g}"
    acts = sum(v for k, v in s.get("hostile_acts", {}).items() if not k.endswith(("_skipped", "_failed")))
    hostile = f"{s['hostile_nodes']} hostile nodes, {acts} hostile acts" if s["hostile_nodes"] else "no hostiles"
    return f"seed {s['seed']}: {s['nodes']} nodes, scenario {s['scenario']}; {link}; {hostile}"


def plot(series: list[tuple[float, float]], windows: list[tuple[float, float, str]], s: dict[str, Any],
         path: Path, timeline: list[tuple[float, int, int]] | None = None) -> Path | None:
    """Top: delivery coverage, partitions as bands, crashed nodes as a step line. Bottom: pending
    simulator events and open links over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(3, 2))
    seen: set[str] = set()
    for a, b, kind in windows:
        if kind == "crash":
            continue
        ax.axvspan(a, max(b, a + 0.2), alpha=0.15, color="tab:orange", label=kind if kind not in seen else None)
        seen.add(kind)
    if series:
        ax.plot([t for t, _ in series], [c for _, c in series], color="tab:blue", label="delivery coverage")
    if s.get("converged_at") is not None:
        ax.axvline(s["converged_at"], color="tab:green", linestyle="--", label="converged")
    ax.axvline(s["heal_time"], color="grey", linestyle=":", label="heal")
    ax.set_ylabel("share of (node, event) deliveries")
    ax.set_ylim(0, 1.05)
    down = nodes_down(windows)
    handles, labels = ax.get_legend_handles_labels()
    if len(down) > 1:
        axd = ax.twinx()
        line = axd.step([t for t, _ in down], [d for _, d in down], where="post", color="tab:red",
                        label="nodes down (crashed)")
        axd.set_ylabel("nodes down")
        axd.set_ylim(0, max(d for _, d in down) + 1)
        axd.yaxis.set_major_locator(MaxNLocator(integer=True))
        handles += line
        labels.append("nodes down (crashed)")
    ax.legend(handles, labels, loc="lower right", fontsize=8)
    ax.set_title(plot_title(s), fontsize=9)
    if timeline:
        ts = [t for t, _, _ in timeline]
        ax2.plot(ts, [p for _, p, _ in timeline], color="tab:purple", label="pending events")
        ax2.set_ylabel("pending events")
        axl = ax2.twinx()
        axl.plot(ts, [n for _, _, n in timeline], color="tab:brown", label="open links")
        axl.set_ylabel("open links")
        h1, l1 = ax2.get_legend_handles_labels()
        h2, l2 = axl.get_legend_handles_labels()
        ax2.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no timeline sampled", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel("virtual time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
