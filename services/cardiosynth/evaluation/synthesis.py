"""``cardiosynth evaluate synthesis``: quantitative figures for the pathology synthesis.

- fidelity: share of synthetic subjects at severity 1.0 that the ACDC rules assign to the target;
- progression: Spearman correlation between severity and the target's key biomarker along each
  trajectory (DCM: LV EDV; HCM: maximal wall thickness; RV: RV EDV);
- identity: Dice between the base NOR subject and its synthetic version at severity 0.2;
- 3D consistency for correlation modes none / both / population, next to the real subjects;
- EF distributions real vs synthetic (Wasserstein distance per class, and the paper's Fig. 3 plot);
- sampler checks: sample correlations against the targets, class mean preserved, and the shift of
  the reference code's un-centred mixing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from cardiosynth.data.biomarkers import subject_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.evaluation.consistency import consistency_figures
from cardiosynth.evaluation.metrics import dice_per_class
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, SyntheticSubject
from cardiosynth.synthesis.sampling import CorrelationMode, reference_mixing, sample_pathology
from cardiosynth.synthesis.stats import MIN_STD, ClassStats

log = logging.getLogger(__name__)

TARGETS: tuple[Group, ...] = (Group.DCM, Group.HCM, Group.RV)
KEY_BIOMARKER = {Group.DCM: "lv_edv", Group.HCM: "max_wall_thickness", Group.RV: "rv_edv"}
MODES: tuple[CorrelationMode, ...] = ("none", "both", "population")


def fidelity(subjects: list[SyntheticSubject], target: Group) -> float:
    """Share of ``subjects`` whose rule diagnosis at severity 1.0 is ``target``."""
    hits = [s.diagnosis.get(1.0, {}).get("group") == target.value for s in subjects]
    return float(np.mean(hits)) if hits else float("nan")


def progression(subjects: list[SyntheticSubject], target: Group) -> dict[str, float]:
    """Spearman rho between severity and the key biomarker, per trajectory: mean, minimum, and pooled."""
    key = KEY_BIOMARKER[target]
    rhos, xs, ys = [], [], []
    for s in subjects:
        sev = sorted(s.biomarkers)
        values = [getattr(s.biomarkers[a], key) for a in sev if s.biomarkers[a] is not None]
        if len(values) == len(sev) >= 3:
            rho = sps.spearmanr(sev, values).statistic
            rhos.append(float(rho) if np.isfinite(rho) else 0.0)
            xs += sev
            ys += values
    pooled = float(sps.spearmanr(xs, ys).statistic) if len(xs) >= 3 else float("nan")
    return {
        "mean_rho": float(np.mean(rhos)) if rhos else float("nan"),
        "min_rho": float(np.min(rhos)) if rhos else float("nan"),
        "pooled_rho": pooled,
        "trajectories": len(rhos),
    }


def identity(subjects: list[SyntheticSubject], severity: float) -> float:
    """Mean foreground Dice between base NOR labels and the synthetic labels at ``severity`` (both phases)."""
    scores = []
    for s in subjects:
        for phase, data in s.phases[severity].items():
            base_labels = s.base_stacks[phase][1]
            scores.append(np.mean(list(dice_per_class(data.labels, base_labels).values())))
    return float(np.mean(scores)) if scores else float("nan")


def sampler_checks(
    stats: ClassStats, slice_factor: np.ndarray, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Draw ``draws`` samples (mode ``both``) and compare their statistics with the targets."""
    rng = np.random.default_rng(seed)
    samples = np.stack([sample_pathology(stats, "both", slice_factor, rng) for _ in range(draws)])
    live = stats.std > MIN_STD
    safe = np.where(live, stats.std, 1.0)
    mean_shift = np.abs(samples.mean(0) - stats.mean)[live] / safe[live]
    # The plain truncated-normal draw, uncorrelated: how far truncation to the class's observed
    # [min, max] alone moves the mean (the correlation step should add nothing to that).
    plain = np.stack([sample_pathology(stats, "none", None, rng) for _ in range(draws)])
    plain_shift = np.abs(plain.mean(0) - stats.mean)[live] / safe[live]
    raw = np.stack(
        [
            reference_mixing(sample_pathology(stats, "none", None, rng), stats.latent_factor, slice_factor)
            for _ in range(draws // 4)
        ]
    )
    raw_shift = np.abs(raw.mean(0) - stats.mean)[live] / safe[live]
    standardised = np.where(live, (samples - stats.mean) / safe, 0.0)
    target_z = stats.latent_factor @ stats.latent_factor.T
    target_s = slice_factor @ slice_factor.T
    mid = stats.ns // 2
    sample_z = np.corrcoef(standardised[:, mid, :], rowvar=False)
    dim = int(np.argmax(stats.std.mean(0)))
    sample_s = np.corrcoef(standardised[:, :, dim], rowvar=False)
    ok_z, ok_s = np.isfinite(sample_z), np.isfinite(sample_s)
    return {
        "draws": draws,
        "mean_shift_in_std_units_mean": float(mean_shift.mean()),
        "mean_shift_in_std_units_max": float(mean_shift.max()),
        "uncorrelated_truncated_mean_shift_in_std_units_mean": float(plain_shift.mean()),
        "reference_mixing_mean_shift_in_std_units_mean": float(raw_shift.mean()),
        "latent_correlation_max_abs_error": float(np.abs(sample_z - target_z)[ok_z].max()),
        "latent_correlation_mean_abs_error": float(np.abs(sample_z - target_z)[ok_z].mean()),
        "slice_correlation_mean_abs_error": float(np.abs(sample_s - target_s)[ok_s].mean()),
    }


def _fig3(
    real: dict[str, dict[str, list[float]]], synth: dict[str, dict[str, list[float]]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, which in zip(axes, ("lv_ef", "rv_ef"), strict=True):
        groups = list(real)
        positions = np.arange(len(groups))
        ax.boxplot([real[g][which] for g in groups], positions=positions - 0.18, widths=0.3)
        synthetic = [synth.get(g, {}).get(which, [np.nan]) for g in groups]
        ax.boxplot(synthetic, positions=positions + 0.18, widths=0.3,
                   patch_artist=True)  # fmt: skip
        ax.set_xticks(positions, groups)
        ax.set_ylabel(f"{which.upper().replace('_', ' ')} (%)")
        ax.set_title(f"{which.upper().replace('_', ' ')}: real (white) vs synthetic (filled)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def evaluate_synthesis(
    synthesizer: Synthesizer,
    out_dir: Path,
    *,
    n: int = 20,
    trajectory_n: int = 10,
    trajectory_steps: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute all figures, write ``synthesis.json``, ``synthesis.md`` and ``ef_distributions.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"n": n, "trajectory_n": trajectory_n, "seed": seed, "targets": {}}
    real_by_group: dict[str, dict[str, list[float]]] = {}
    for group in (Group.NOR, *TARGETS):
        bms = [subject_biomarkers(sources.load(r).subject) for r in sources.by_group(synthesizer.refs, group)]
        real_by_group[group.value] = {"lv_ef": [b.lv_ef for b in bms], "rv_ef": [b.rv_ef for b in bms]}
    synth_ef: dict[str, dict[str, list[float]]] = {}
    consistency: dict[str, dict[str, float]] = {}
    stacks_by_mode: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    for target in TARGETS:
        log.info("evaluating %s", target.value)
        final = synthesizer.run(SynthesisRequest(target, n=n, seed=seed))
        traj = synthesizer.run(
            SynthesisRequest(
                target,
                n=trajectory_n,
                seed=seed + 1,
                severities=(0.2, *SynthesisRequest.trajectory(trajectory_steps)),
            )
        )
        ef = [s.biomarkers[1.0] for s in final if s.biomarkers.get(1.0) is not None]
        synth_ef[target.value] = {"lv_ef": [b.lv_ef for b in ef if b], "rv_ef": [b.rv_ef for b in ef if b]}
        real = real_by_group[target.value]
        report["targets"][target.value] = {
            "fidelity": fidelity(final, target),
            "diagnoses": [s.diagnosis.get(1.0, {}).get("group") for s in final],
            "progression": progression(traj, target),
            "identity_dice_at_0.2": identity(traj, 0.2),
            "wasserstein_lv_ef": float(
                sps.wasserstein_distance(real["lv_ef"], synth_ef[target.value]["lv_ef"])
            ),
            "wasserstein_rv_ef": float(
                sps.wasserstein_distance(real["rv_ef"], synth_ef[target.value]["rv_ef"])
            ),
        }
        for mode in MODES:
            if mode == "both":
                subjects = final
            else:
                subjects = synthesizer.run(SynthesisRequest(target, n=n, seed=seed, correlation=mode))
            stacks_by_mode[mode] += [s.phases[1.0][ph].labels for s in subjects for ph in s.phases[1.0]]
    for name, stacks in stacks_by_mode.items():
        consistency[name] = consistency_figures(stacks)
    real_stacks = []
    for group in TARGETS:
        for r in sources.by_group(synthesizer.refs, group):
            p = sources.load(r).processed
            real_stacks += [p.ed_label, p.es_label]
    consistency["real"] = consistency_figures(real_stacks)
    report["consistency"] = consistency
    hcm_ed = synthesizer.class_stats(Group.HCM, "ED")
    from cardiosynth.synthesis.correlation import correlation_factor
    from cardiosynth.synthesis.equalise import equalise
    from cardiosynth.synthesis.stages import encode_stacks

    base = sources.load(sources.by_group(synthesizer.refs, Group.NOR)[0]).processed
    base_eq = equalise(encode_stacks(synthesizer.vae, [base.ed_label])[0], hcm_ed.ns)
    report["sampler"] = sampler_checks(hcm_ed, correlation_factor(base_eq.T), seed=seed)
    report["ef_real"] = {
        g: {k: [float(x) for x in v] for k, v in d.items()} for g, d in real_by_group.items()
    }
    report["ef_synthetic"] = synth_ef
    report["timings_s"] = dict(synthesizer.timings)
    _fig3(real_by_group, synth_ef, out_dir / "ef_distributions.png")
    for name, text in (("synthesis.json", json.dumps(report, indent=2, default=float) + "\n"),
                       ("synthesis.md", synthesis_markdown(report))):  # fmt: skip
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out_dir / name)
    return report


def synthesis_markdown(report: dict[str, Any]) -> str:
    lines = ["# Synthesis evaluation", "", f"n = {report['n']} per target at severity 1.0; "
             f"{report['trajectory_n']} trajectories per target; seed {report['seed']}.", "",
             "| target | fidelity | progression rho (mean / min / pooled) | identity Dice @0.2 "
             "| W1 LVEF | W1 RVEF |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for target, t in report["targets"].items():
        p = t["progression"]
        lines.append(
            f"| {target} | {t['fidelity']:.2f} "
            f"| {p['mean_rho']:.3f} / {p['min_rho']:.3f} / {p['pooled_rho']:.3f} "
            f"| {t['identity_dice_at_0.2']:.3f} "
            f"| {t['wasserstein_lv_ef']:.1f} | {t['wasserstein_rv_ef']:.1f} |"
        )
    lines += ["", "## 3D consistency (severity 1.0, DCM + HCM + RV, ED + ES)", "",
              "| stacks | adjacent-slice Dice | LV-area smoothness | components RV / MYO / LV "
              "| single-component share |",
              "|---|---|---|---|---|"]  # fmt: skip
    for mode, c in report["consistency"].items():
        lines.append(
            f"| {mode} | {c['adjacent_slice_dice']:.3f} | {c['lv_area_smoothness']:.3f} | "
            f"{c['components_rv']:.2f} / {c['components_myo']:.2f} / {c['components_lv']:.2f} | "
            f"{c['single_component_share']:.2f} |"
        )
    s = report["sampler"]
    lines += ["", "## Sampler (HCM, ED, mode both)", ""]
    lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in s.items()]
    lines += ["", "![EF distributions](ef_distributions.png)", ""]
    return "\n".join(lines)
