"""Render phantom subjects and write them in the ACDC layout, deterministic by seed.

Subject ``i`` of a data set with seed ``s`` draws everything from ``default_rng([s, i])`` (version 2:
its population draw from its cell of its group's Latin hypercube, which depends on the size of its
group), so a subject does not depend on the number of worker processes or on the order of work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth import __version__
from cardiosynth.data.acdc import SubjectInfo, frame_paths
from cardiosynth.data.labels import ACDC_GROUP_ORDER, Group
from cardiosynth.data.nifti import save_volume
from cardiosynth.data.phantom.anatomy import PHASES, HeartShape, Phase, fit_heart, volumes_ml
from cardiosynth.data.phantom.appearance import STYLES, bias_field, body_intensity, rician, texture
from cardiosynth.data.phantom.params import (
    PHANTOM_CONTENT,
    PHANTOM_VERSION,
    SubjectParams,
    check_phantom_version,
    sample_subject_params,
)
from cardiosynth.data.phantom.population import fit_wall_to_mass, group_strata
from cardiosynth.data.phantom.render import render_phase
from cardiosynth.data.phantom.tissues import TISSUE_TO_LABEL, Tissue, heart_tissues
from cardiosynth.data.phantom.variation import VARIATION_STREAM, vary_subject

log = logging.getLogger(__name__)

_INPLANE_SUPERSAMPLING = 2  # per axis, for partial volume at tissue boundaries
_THROUGH_PLANE_SAMPLES = 3  # across the slice thickness
_MAX_DRAWS = 20  # redraws when a sampled shape cannot reach its target volumes
# The phantom versions (PHANTOM_VERSION, the default, and PHANTOM_CONTENT, what each version's output
# is) live in .params; every phantom.json records both, and the default data cache is keyed by them.


@dataclass(frozen=True)
class PhantomSubject:
    """A rendered subject: ``(X, Y, Z)`` arrays, the Info.cfg contents and what made them."""

    subject_id: str
    info: SubjectInfo
    affine: npt.NDArray[np.float64]
    ed_image: npt.NDArray[np.int16]
    ed_label: npt.NDArray[np.uint8]
    es_image: npt.NDArray[np.int16]
    es_label: npt.NDArray[np.uint8]
    params: SubjectParams
    shape: HeartShape  # fitted
    seed: int
    index: int

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable ground truth: group, targets, fitted anatomy, acquisition, style."""
        acq = self.params.acquisition
        depths = acq.depths
        model = {phase: volumes_ml(self.shape, depths, acq.slice_spacing, phase) for phase in PHASES}
        infarct = self.shape.infarct
        return {
            "generator": f"cardiosynth {__version__}",
            "phantom_version": self.params.version,
            "phantom_content": PHANTOM_CONTENT[self.params.version],
            "seed": self.seed,
            "index": self.index,
            "group": self.params.group.value,
            "territory": infarct.territory if infarct is not None else None,
            "style": self.params.style,
            "sex": self.params.sex,
            "bsa_m2": self.params.bsa,
            "population": {
                "mass_target_g": self.params.mass_target,
                "max_wall_target_mm": self.params.max_wall_target,
                "wall_thickness_mm": self.shape.wall_thickness,
            },
            "targets_ml": {
                "lv_edv": self.params.lv_edv,
                "lv_esv": self.params.lv_esv,
                "rv_edv": self.params.rv_edv,
                "rv_esv": self.params.rv_esv,
            },
            "model_volumes_ml": model,
            "shape": _jsonable(asdict(self.shape)),
            "acquisition": _jsonable(asdict(acq)),
            "variation": _jsonable(asdict(v)) if (v := self.params.variation) is not None else None,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def group_for_index(index: int, n_subjects: int) -> Group:
    """Groups in equal blocks in the ACDC order (DCM, HCM, MINF, NOR, RV); remainders go first."""
    return _block_of(index, n_subjects)[0]


def _block_of(index: int, n_subjects: int) -> tuple[Group, int, int]:
    """Group of subject ``index``, its rank within the group's block and the block's size."""
    if not 0 <= index < n_subjects:
        raise ValueError(f"index {index} outside [0, {n_subjects})")
    n_groups = len(ACDC_GROUP_ORDER)
    base, extra = divmod(n_subjects, n_groups)
    start = 0
    for g, group in enumerate(ACDC_GROUP_ORDER):
        size = base + (1 if g < extra else 0)
        if index < start + size:
            return group, index - start, size
        start += size
    raise AssertionError("unreachable: the blocks cover every index")


def _oblique_affine(params: SubjectParams, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Voxel-to-world affine of an oblique short-axis stack (a rotation times the spacing)."""
    acq = params.acquisition
    angles = rng.uniform(-0.6, 0.6, 3)
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    zooms = np.diag([acq.pixel_spacing, acq.pixel_spacing, acq.slice_spacing])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ zooms
    centre_voxel = np.array([(acq.matrix[0] - 1) / 2, (acq.matrix[1] - 1) / 2, (acq.n_slices - 1) / 2])
    affine[:3, 3] = rng.uniform(-20, 20, 3) - affine[:3, :3] @ centre_voxel
    return affine


def _render_phase(
    params: SubjectParams, shape: HeartShape, phase: Phase, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    if params.variation is not None:  # version 2
        return render_phase(params, shape, phase, rng)
    acq = params.acquisition
    style = STYLES[params.style]
    nx, ny = acq.matrix
    px = acq.pixel_spacing
    # Heart-frame coordinates of pixel centres: x to the image right, y anterior (up on display).
    xs = (np.arange(nx) - (nx - 1) / 2.0) * px - acq.heart_offset[0]
    ys = -(np.arange(ny) - (ny - 1) / 2.0) * px - acq.heart_offset[1]
    x, y = np.meshgrid(xs, ys, indexing="ij")

    extent = (
        shape.lv_radius * (1 + shape.ellipticity)
        + shape.wall_thickness * (1 + shape.septal_extra)
        + max(shape.rv_height_ed, shape.rv_height_es)
        + params.extras.rv_wall
        + params.extras.fat_base
        + params.extras.fat_extra
        + 2 * px
    )
    ii = np.flatnonzero(np.abs(xs) < extent)
    jj = np.flatnonzero(np.abs(ys) < extent)
    box = (slice(ii[0], ii[-1] + 1), slice(jj[0], jj[-1] + 1)) if ii.size and jj.size else None
    offsets = (np.arange(_INPLANE_SUPERSAMPLING) + 0.5) / _INPLANE_SUPERSAMPLING - 0.5
    through = (np.arange(_THROUGH_PLANE_SAMPLES) + 0.5) / _THROUGH_PLANE_SAMPLES - 0.5
    lut = style.tissue_lut()

    image = np.zeros((nx, ny, acq.n_slices))
    labels = np.zeros((nx, ny, acq.n_slices), dtype=np.uint8)
    for k, depth in enumerate(acq.depths):
        d = float(depth)
        labels[:, :, k] = TISSUE_TO_LABEL[heart_tissues(shape, params.extras, x, y, d, phase)]
        body = body_intensity(params.body, style, x, y, d / shape.epi_length)
        if box is not None:
            bx, by = x[box], y[box]
            body_box = body[box]
            acc = np.zeros(bx.shape)
            for dz in through:
                for ox in offsets:
                    for oy in offsets:
                        codes = heart_tissues(
                            shape,
                            params.extras,
                            bx + ox * px,
                            by + oy * px,
                            d + dz * acq.slice_thickness,
                            phase,
                        )
                        acc += np.where(codes == Tissue.NONE, body_box, lut[codes])
            body[box] = acc / (len(through) * len(offsets) ** 2)
        image[:, :, k] = body

    image *= texture(image.shape, rng)
    image = ndimage.gaussian_filter(image, sigma=(style.blur, style.blur, 0.0))
    anterior_wall = params.body.torso_centre[1] + params.body.torso_axes[1]
    image *= bias_field((nx, ny), px, style, anterior_wall, y, rng)[:, :, None]
    image = rician(image, style.noise, rng) * style.gain * float(rng.uniform(0.85, 1.15))
    return np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16), labels


def generate_subject(
    index: int, group: Group, seed: int, version: int = PHANTOM_VERSION, *, n_subjects: int | None = None
) -> PhantomSubject:
    """Render subject ``index`` of ``group`` for data-set ``seed`` (ED and ES image and labels) with
    phantom ``version`` (see :data:`.params.PHANTOM_VERSIONS`; ValueError for another).

    ``n_subjects`` (version 2): the size of the data set the subject belongs to, whose group blocks
    (:func:`group_for_index`) stratify the population draws (:func:`.population.group_strata`), as
    :func:`generate_dataset` does; without it the subject is drawn on its own.

    Raises:
        ValueError: an unknown ``version``, or ``group`` is not the group of ``index`` among
            ``n_subjects``.
    """
    version = check_phantom_version(version)
    strata = None
    if n_subjects is not None and version >= 2:
        block_group, rank, size = _block_of(index, n_subjects)
        if block_group is not group:
            raise ValueError(f"subject {index} of {n_subjects} is {block_group.value}, not {group.value}")
        strata = group_strata(seed, group, size)[rank]
    rng = np.random.default_rng([seed, index])
    # Version 2's anatomy and appearance draw from their own stream: the population's draws stay put.
    variation_rng = np.random.default_rng([seed, index, VARIATION_STREAM])
    for attempt in range(_MAX_DRAWS):
        # Only the first draw is stratified: a redraw means its cell could not be drawn as a heart.
        params = sample_subject_params(group, rng, version, strata if attempt == 0 else None)
        if version >= 2:
            params = vary_subject(params, variation_rng)
        acq = params.acquisition
        try:
            shape = fit_heart(
                params.shape,
                acq.depths,
                acq.slice_spacing,
                lv_edv=params.lv_edv,
                lv_esv=params.lv_esv,
                rv_edv=params.rv_edv,
                rv_esv=params.rv_esv,
            )
            if params.mass_target is not None:  # version 2: the wall carries the drawn mass
                shape = fit_wall_to_mass(
                    shape,
                    acq.depths,
                    acq.slice_spacing,
                    mass_g=params.mass_target,
                    max_wall=params.max_wall_target,
                    lv_edv=params.lv_edv,
                    lv_esv=params.lv_esv,
                    rv_edv=params.rv_edv,
                    rv_esv=params.rv_esv,
                )
            break
        except ValueError as exc:  # a shape that cannot hold the targets: draw again
            log.debug("subject %d draw %d rejected: %s", index, attempt, exc)
    else:
        raise RuntimeError(f"subject {index} ({group}): no feasible anatomy in {_MAX_DRAWS} draws")
    affine = _oblique_affine(params, rng)
    ed_image, ed_label = _render_phase(params, shape, "ED", rng)
    es_image, es_label = _render_phase(params, shape, "ES", rng)
    info = SubjectInfo(
        ed=1,
        es=acq.es_frame,
        group=group,
        height=round(params.height, 1),
        weight=round(params.weight, 1),
        nb_frames=acq.nb_frames,
        sex=params.sex,  # version 2 only; version 1's Info.cfg stays as it was
    )
    return PhantomSubject(
        subject_id=f"patient{index + 1:03d}",
        info=info,
        affine=affine,
        ed_image=ed_image,
        ed_label=ed_label,
        es_image=es_image,
        es_label=es_label,
        params=params,
        shape=shape,
        seed=seed,
        index=index,
    )


def write_subject(subject: PhantomSubject, parent: Path) -> Path:
    """Write ``subject`` under ``parent/patientNNN`` atomically: a temporary folder renamed at the end."""
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / subject.subject_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{subject.subject_id}.", dir=parent))
    try:
        staged = tmp / subject.subject_id
        staged.mkdir()
        (staged / "Info.cfg").write_text(subject.info.to_cfg(), encoding="utf-8")
        for frame, image, label in (
            (subject.info.ed, subject.ed_image, subject.ed_label),
            (subject.info.es, subject.es_image, subject.es_label),
        ):
            image_path, label_path = frame_paths(staged, frame)
            save_volume(image_path, image, subject.affine)
            save_volume(label_path, label, subject.affine)
        (staged / "phantom.json").write_text(
            json.dumps(subject.provenance(), indent=2) + "\n", encoding="utf-8"
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _generate_and_write(job: tuple[int, int, int, str, int]) -> str:
    index, n_subjects, seed, parent, version = job
    group = group_for_index(index, n_subjects)
    subject = generate_subject(index, group, seed, version, n_subjects=n_subjects)
    return str(write_subject(subject, Path(parent)))


def generate_dataset(
    out: Path,
    n_subjects: int = 100,
    seed: int = 0,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    version: int = PHANTOM_VERSION,
) -> list[Path]:
    """Write ``n_subjects`` phantom subjects to ``out/training/patientNNN`` (ACDC layout).

    Args:
        out: data-set root; ``out/training`` must not hold subjects unless ``overwrite``.
        n_subjects: at least 5, so that every group is present.
        seed: data-set seed; same seed, same files.
        workers: processes (default: the CPU count); the files do not depend on it.
        overwrite: replace subjects already there.
        progress: called with (done, total) after each subject.
        version: phantom version (1 or 2, the default); each stays reproducible.

    Returns:
        The subject directories, in order.
    """
    if n_subjects < len(ACDC_GROUP_ORDER):
        raise ValueError(
            f"n_subjects must be at least {len(ACDC_GROUP_ORDER)} (one per group), got {n_subjects}"
        )
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    version = check_phantom_version(version)
    parent = Path(out) / "training"
    existing = sorted(parent.glob("patient*")) if parent.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(
            f"{parent} already holds {len(existing)} subjects; pass overwrite to replace them"
        )
    workers = max(1, min(workers or os.cpu_count() or 1, n_subjects))
    jobs = [(i, n_subjects, seed, str(parent), version) for i in range(n_subjects)]
    done: list[str] = []
    if workers == 1:
        results: Sequence[str] | Any = map(_generate_and_write, jobs)
        for path in results:
            done.append(path)
            if progress:
                progress(len(done), n_subjects)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for path in pool.map(_generate_and_write, jobs, chunksize=1):
                done.append(path)
                if progress:
                    progress(len(done), n_subjects)
    manifest = {
        "generator": f"cardiosynth {__version__}",
        "phantom_version": version,
        "phantom_content": PHANTOM_CONTENT[version],
        "seed": seed,
        "subjects": n_subjects,
        "groups": {
            g.value: sum(group_for_index(i, n_subjects) is g for i in range(n_subjects)) for g in Group
        },
    }
    (Path(out) / "phantom.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %d phantom v%d subjects to %s (seed %d)", n_subjects, version, parent, seed)
    return [Path(p) for p in done]


def mid_slice(n_slices: int) -> int:
    """Index of the mid-ventricular slice of a base-to-apex stack of ``n_slices``."""
    return max(0, min(n_slices - 1, math.floor(0.45 * n_slices)))
