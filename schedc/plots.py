"""Pictures people would rather look at than read: the schedule as a step x block heatmap."""

from __future__ import annotations

from pathlib import Path

from schedc.atomic import atomic_path
from schedc_runtime import Schedule
from schedc_runtime.format import ACTIONS, is_reuse


def _save(fig, path: str | Path) -> Path:
    """Write a figure as PNG atomically and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def schedule_heatmap(schedule: Schedule, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    codes = [[ACTIONS.index(a) for a in row] for row in schedule.decisions]  # [T][B]
    palette = ["#1f4e79", "#f2b134", "#8fbc8f", "#c0504d", "#9e9e9e", "#d9d9d9", "#7f6084", "#b39ddb", "#80cbc4"]
    colors = [palette[i % len(palette)] for i in range(len(ACTIONS))]  # one per registered decision
    fig, ax = plt.subplots(figsize=(max(6, schedule.num_steps * 0.16), max(3, schedule.num_blocks * 0.3)))
    ax.imshow(list(map(list, zip(*codes))), aspect="auto", cmap=ListedColormap(colors),
              vmin=-0.5, vmax=len(ACTIONS) - 0.5, interpolation="nearest")  # [B, T]
    ax.set_xlabel("denoising step")
    ax.set_ylabel("block")
    ax.set_yticks(range(schedule.num_blocks))
    ax.set_yticklabels(schedule.model.blocks, fontsize=7)
    prov = schedule.provenance
    pred = (prov.get("predicted") or {})
    ax.set_title(
        f"{schedule.model.name}: {prov.get('solver', '?')} schedule, cost {pred.get('cost', schedule.compute_fraction()):.2f}, "
        f"predicted rel L2 {pred.get('rel_l2', float('nan')):.4f}", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i]) for i in range(len(ACTIONS))]
    labels = [f"reuse ({a})" if is_reuse(a) else ("compute" if a == "native" else f"compute {a}") for a in ACTIONS]
    ax.legend(handles, labels, loc="upper right", fontsize=7)
    return _save(fig, path)


def pareto_plot(rows: list[dict], path: str | Path, title: str = "quality vs measured speedup") -> Path:
    """rows: dicts with `variant`, `speedup`, `psnr`; one line per variant across budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pts = sorted((r["speedup"], r["psnr"]) for r in rows if r["variant"] == variant)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=variant)
    ax.set_xlabel("measured speedup vs full compute (x)")
    ax.set_ylabel("PSNR vs full compute (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
