"""Writing the downstream-utility report (:mod:`.utility`): ``report.json``, ``report.md`` (a table
per protocol, arm x group, mean +- spread over seeds) and ``dice.png`` (Dice per group and arm with
error bars)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cardiosynth.evaluation.utility import ARMS, GROUPS

PROTOCOL_TITLES = {
    "full": "(a) full real training set",
    "low_data": "(b) low data",
}


def _title(name: str) -> str:
    if name.startswith("missing:"):
        return f"(c) no real {name.split(':', 1)[1]} subject in training"
    return PROTOCOL_TITLES.get(name, name)


def _cell(stat: dict[str, float], digits: int = 3) -> str:
    mean, sd = stat["mean"], stat["sd"]
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN and infinities as ``null`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def utility_markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    seeds = cfg["seeds"]
    lines = ["# Downstream utility: segmentation trained with and without synthetic data", ""]
    if report.get("command"):
        lines += ["Command:", "", "```", report["command"], "```", ""]
    lines += [
        f"Data: {report['data']}; models: "
        f"{', '.join(f'{k} {v}' for k, v in report['models'].items()) or 'n/a'}.",
        "",
        f"Preset `{report.get('preset', 'custom')}`: MONAI 2D UNet channels {cfg['channels']}, "
        f"{cfg['image_size']} x {cfg['image_size']} slices (the 128 x 128 crop at 1.5 mm resampled), "
        f"{cfg['iterations']} Adam steps (lr {cfg['learning_rate']}, batch {cfg['batch_size']}) "
        "in every arm, "
        f"flips + intensity jitter; seeds {', '.join(str(s) for s in seeds)} (mean ± sample SD over seeds); "
        f"{cfg['synthetic_per_group']} subjects added per group; low data: {cfg['low_data']} real subjects "
        f"per group; protocol (c) keeps {cfg['keep_missing']} real subjects of the missing group. "
        f"Split: {cfg['train_fraction']:.0%} of each group for training / statistics "
        f"(seed {cfg['split_seed']}), "
        "the rest held out for testing.",
        "",
        "Held-out subjects per group: "
        + ", ".join(f"{g} {len(v['held_out'])}" for g, v in report["split"].items())
        + ". Metrics on the evaluation grid, mean of ED and ES per subject, then over the group's subjects: "
        "mean foreground Dice (RV, myocardium, LV), HD95 (mm), absolute LVEF error (%).",
        "",
    ]
    if report.get("pending"):
        lines += [
            f"**Incomplete:** not finished: {', '.join(report['pending'])} (the report of a run in "
            "progress or cut short; a table shows the arms that finished).",
            "",
        ]
    timings = report.get("timings_s", {})
    if timings:
        lines += [
            "Timing: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
            + f" ({timings.get('total', 0) / 60:.1f} min).",
            "",
        ]
    targets = report.get("targets", [])
    if targets:
        lines += [
            "## Targets, protocol (c)",
            "",
            "| missing | Dice real | Dice real+synthetic | gain (>= 0.03) | Dice real+elastic "
            "| beats elastic | worst other group | HD95 real -> +syn | LVEF err real -> +syn | met |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in targets:
            worst = t.get("worst_other")
            worst_text = f"{worst[0]} {worst[1]:+.3f}" if worst else "n/a"
            lines.append(
                f"| {t['group']} | {t['dice_real']:.3f} | {t['dice_synthetic']:.3f} | {t['dice_gain']:+.3f} "
                f"{'yes' if t['gain_met'] else 'no'} | {t.get('dice_elastic', math.nan):.3f} | "
                f"{'yes' if t.get('beats_elastic') else 'no'} | {worst_text} "
                f"{'ok' if t['others_kept'] else 'no'} | {t['hd95_real']:.2f} -> {t['hd95_synthetic']:.2f} | "
                f"{t['lvef_err_real']:.1f} -> {t['lvef_err_synthetic']:.1f} | {'yes' if t['met'] else 'no'} |"
            )
        lines.append("")
        ceilings = [t for t in targets if "ceiling_gain" in t]
        if ceilings:
            lines += [
                "Ceiling (`real+real`: the same number of the missing group's *real* training subjects "
                "put back instead of synthetic ones; a gain target above it is out of reach for any "
                "synthetic data on this data set):",
                "",
                "| missing | Dice real | Dice real+real | ceiling gain | allows >= 0.03 | synthetic gain "
                "| share of the ceiling |",
                "|---|---|---|---|---|---|---|",
            ]
            for t in ceilings:
                share = f"{t['dice_gain'] / t['ceiling_gain']:.0%}" if t["ceiling_gain"] > 0 else "n/a"
                lines.append(
                    f"| {t['group']} | {t['dice_real']:.3f} | {t['dice_real_more']:.3f} | "
                    f"{t['ceiling_gain']:+.3f} | {'yes' if t['ceiling_allows_target'] else 'no'} | "
                    f"{t['dice_gain']:+.3f} | {share} |"
                )
            lines.append("")
    for name, proto in report["protocols"].items():
        lines += [f"## {_title(name)}", ""]
        real = proto["real_subjects"]
        lines.append(
            "Real training subjects: " + ", ".join(f"{g} {len(v)}" for g, v in real.items())
            + f"; added groups: {', '.join(proto['added_groups'])}; method pool: {proto['pool']}"
            + "; elastic from: " + ", ".join(f"{g} {src}" for g, src in proto["elastic_from"].items()) + "."
        )  # fmt: skip
        for note in proto.get("notes", []):
            lines.append(f"Note: {note}.")
        lines += ["", "Mean foreground Dice:", ""]
        groups = [g.value for g in GROUPS if g.value in next(iter(proto["arms"].values()))["summary"]]
        lines += ["| arm | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for arm in (a for a in ARMS if a in proto["arms"]):
            summary = proto["arms"][arm]["summary"]
            lines.append(f"| {arm} | " + " | ".join(_cell(summary[g]["dice"]) for g in groups) + " |")
        if name.startswith("missing:"):
            group = name.split(":", 1)[1]
            lines += [
                "",
                f"The missing group ({group}) in detail:",
                "",
                "| arm | Dice | Dice RV | Dice myo | Dice LV | HD95 (mm) | LVEDV err (ml) | LVEF err (%) "
                "| RVEF err (%) | mass err (g) |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for arm in (a for a in ARMS if a in proto["arms"]):
                s = proto["arms"][arm]["summary"][group]
                keys = ("dice", "dice:RV cavity", "dice:LV myocardium", "dice:LV cavity")
                errs = ("err:lv_edv", "err:lv_ef", "err:rv_ef", "err:myo_mass")
                lines.append(
                    f"| {arm} | " + " | ".join(_cell(s[k]) for k in keys) + f" | {_cell(s['hd95'], 2)} | "
                    + " | ".join(_cell(s[k], 1) for k in errs) + " |"
                )  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"


def dice_figure(report: dict[str, Any], path: Path) -> None:
    """One panel per protocol: mean foreground Dice per group (x) and arm (bars), SD error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["protocols"])
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    colours = dict(zip(ARMS, ("#444444", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"), strict=True))
    for ax, name in zip(axes.flat, names, strict=False):
        arms = [a for a in ARMS if a in report["protocols"][name]["arms"]]
        summaries = {a: report["protocols"][name]["arms"][a]["summary"] for a in arms}
        groups = [g.value for g in GROUPS if g.value in summaries[arms[0]]]
        width = 0.8 / len(arms)
        for j, arm in enumerate(arms):
            xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(groups))]
            means = [summaries[arm][g]["dice"]["mean"] for g in groups]
            sds = [summaries[arm][g]["dice"]["sd"] for g in groups]
            ax.bar(xs, means, width, yerr=sds, capsize=2, label=arm, color=colours[arm])
        ax.set_xticks(range(len(groups)), groups)
        low = min(
            (summaries[a][g]["dice"]["mean"] for a in arms for g in groups
             if math.isfinite(summaries[a][g]["dice"]["mean"])),
            default=0.0,
        )  # fmt: skip
        ax.set_ylim(max(0.0, low - 0.05), 1.0)
        ax.set_title(_title(name), fontsize=10)
        ax.set_ylabel("mean foreground Dice")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path, Path]:
    """``report.json``, ``report.md`` and ``dice.png`` in ``out_dir`` (each written atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "report.json", out_dir / "report.md", out_dir / "dice.png")
    for path, text in (
        (paths[0], json.dumps(_clean(report), indent=2, default=_json_default) + "\n"),
        (paths[1], utility_markdown(report)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    tmp_png = out_dir / ".dice.tmp.png"
    dice_figure(report, tmp_png)
    os.replace(tmp_png, paths[2])
    return paths
