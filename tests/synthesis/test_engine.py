from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiosynth.cli import main
from cardiosynth.data.acdc import frame_paths, read_subject
from cardiosynth.data.labels import Group
from cardiosynth.data.nifti import load_volume, save_volume
from cardiosynth.models.registry import save_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer
from cardiosynth.synthesis.modes import DEFAULT_CORRELATION
from cardiosynth.synthesis.output import write_subject
from cardiosynth.synthesis.scale import ClassScale

SPADE_SMALL = SpadeConfig(channels=(4, 8), spade_hidden=4, head_channels=4, style_dim=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained but fixed models (the engine's mechanics do not depend on training)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    save_model(LabelVAE(VAEConfig()).eval(), root / "vae" / "t0", kind="vae", version="t0")
    save_model(SpadeTranslator(SPADE_SMALL).eval(), root / "spade" / "t0", kind="spade", version="t0")
    return root


def _restack(subject_dir: Path, out_dir: Path, n_slices: int) -> None:
    """Copy a subject with its slices resampled (nearest) to ``n_slices``, base to apex kept."""
    subject = read_subject(subject_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "Info.cfg").write_text(subject.info.to_cfg())
    z = subject.ed_label.shape[2]
    pick = np.round(np.linspace(0, z - 1, n_slices)).astype(int)
    for frame, image, label in ((subject.info.ed, subject.ed_image, subject.ed_label),
                                (subject.info.es, subject.es_image, subject.es_label)):  # fmt: skip
        image_path, label_path = frame_paths(out_dir, frame)
        save_volume(image_path, image[:, :, pick], subject.affine)
        save_volume(label_path, label[:, :, pick], subject.affine)


@pytest.fixture(scope="module")
def data(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's subjects plus NOR subjects of 6 and 18 slices."""
    root = tmp_path_factory.mktemp("synthdata") / "training"
    shutil.copytree(phantom_root / "training", root)
    nor = next(p for p in sorted(root.iterdir()) if "Group: NOR" in (p / "Info.cfg").read_text())
    _restack(nor, root / "patient901", 6)
    _restack(nor, root / "patient902", 18)
    return root.parent


def _synth(data: Path, models: Path, cache: Path | None = None) -> Synthesizer:
    from cardiosynth.models.registry import load_spade, load_vae

    vae, spade = load_vae("t0", root=models), load_spade("t0", root=models)
    return Synthesizer(vae.module, spade.module, data, model_versions={"vae": "t0"}, cache_dir=cache)


@pytest.mark.parametrize("base", ["patient901", "patient902"])
def test_short_and_long_stacks_map_back_to_their_own_geometry(data: Path, models: Path, base: str) -> None:
    synthesizer = _synth(data, models)
    request = SynthesisRequest(Group.HCM, n=1, seed=0, severities=(0.5, 1.0), base_subjects=(base,))
    (subject,) = synthesizer.run(request)
    native = read_subject(data / "training" / base)
    for severity in (0.5, 1.0):
        for phase in ("ED", "ES"):
            out = subject.phases[severity][phase]
            assert out.native_labels.shape == native.ed_label.shape
            assert out.labels.shape[0] == native.ed_label.shape[2]  # 6 or 18 slices, none dropped
            assert set(np.unique(out.native_labels)) <= {0, 1, 2, 3}
            assert np.isfinite(out.native_image).all()
    assert subject.base.subject_id == base


def test_same_seed_same_bytes_and_provenance(data: Path, models: Path, tmp_path: Path) -> None:
    request = SynthesisRequest(Group.DCM, n=2, seed=7, severities=(1.0,))
    digests = []
    for run in ("a", "b"):
        subjects = _synth(data, models, cache=tmp_path / "cache").run(
            request
        )  # second run: cached statistics
        folder = tmp_path / run
        for s in subjects:
            write_subject(s, request, folder, models={"vae": "t0", "spade": "t0"})
        digests.append({p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(folder.rglob("*")) if p.is_file()})  # fmt: skip
    assert digests[0] == digests[1]
    assert len(digests[0]) == 2 * (4 + 2)  # ED/ES image+label, provenance, preview per subject
    assert list((tmp_path / "cache").rglob("DCM_ED.npz"))
    record = json.loads((tmp_path / "a" / "DCM_000" / "provenance.json").read_text())
    assert record["pathology"] == "DCM"
    assert record["seed"] == 7
    assert record["correlation"] == DEFAULT_CORRELATION
    assert record["base_group"] == "NOR"
    assert record["models"] == {"vae": "t0", "spade": "t0"}
    assert set(record["biomarkers"]["1.00"]) >= {"lv_edv", "lv_ef", "rv_edv", "max_wall_thickness"}
    image = load_volume(tmp_path / "a" / "DCM_000" / "DCM_000_s1.00_ED.nii.gz")
    base = read_subject(data / "training" / record["base_subject"])
    # the base's affine with the class's slice spacing about the stack centre (synthesis.scale)
    scale = ClassScale.from_dict(record["class_scale"]["1.00"])
    assert scale == subjects[0].scale(1.0) != ClassScale()
    assert np.allclose(image.affine, scale.affine(base.affine, base.ed_label.shape[2]))
    other = _synth(data, models).run(SynthesisRequest(Group.DCM, n=2, seed=8, severities=(1.0,)))
    differs = [
        a.base.subject_id != b.base.subject_id
        or not np.array_equal(a.phases[1.0]["ED"].labels, b.phases[1.0]["ED"].labels)
        for a, b in zip(other, subjects, strict=True)
    ]
    assert any(differs)  # another seed, another draw


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="n must be"):
        SynthesisRequest(Group.HCM, n=0)
    with pytest.raises(ValueError, match="severities"):
        SynthesisRequest(Group.HCM, severities=(0.0,))
    with pytest.raises(ValueError, match="phases"):
        SynthesisRequest(Group.HCM, phases=("ED", "XX"))
    with pytest.raises(ValueError, match="correlation"):
        SynthesisRequest(Group.HCM, correlation="diag")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown interpolation 'linear'"):
        SynthesisRequest(Group.HCM, interpolation="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shift_residual"):
        SynthesisRequest(Group.HCM, interpolation="shift", shift_residual=-0.1)
    assert SynthesisRequest.trajectory(4) == (0.25, 0.5, 0.75, 1.0)
    with pytest.raises(ValueError, match="trajectory"):
        SynthesisRequest.trajectory(0)


def test_unknown_base_subject_and_missing_class(data: Path, models: Path, tmp_path: Path) -> None:
    synthesizer = _synth(data, models)
    with pytest.raises(ValueError, match="not NOR subjects"):
        synthesizer.run(SynthesisRequest(Group.HCM, base_subjects=("patient999",)))
    only_nor = tmp_path / "training"
    only_nor.mkdir()
    shutil.copytree(data / "training" / "patient901", only_nor / "patient901")
    with pytest.raises(ValueError, match="no HCM subject"):
        _synth(tmp_path, models).run(SynthesisRequest(Group.HCM))


def test_synthesize_command(
    data: Path, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["synthesize", "--pathology", "hcm", "-n", "1", "--trajectory", "2", "--data", str(data),
            "--model", "t0", "--model-root", str(models), "--out", str(tmp_path / "out"), "--no-cache",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "wrote 1 HCM subjects" in out
    assert "LVEDV" in out
    files = sorted(p.name for p in (tmp_path / "out" / "HCM_000").iterdir())
    assert "HCM_000_s0.50_ES_gt.nii.gz" in files
    assert "preview.png" in files
    assert main(args) == 2  # outputs exist: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args[:2], "XYZ", *args[3:]]) == 2
    assert "unknown group 'XYZ'" in capsys.readouterr().err


def test_the_two_halves_equal_the_whole_through_bytes(data: Path, models: Path) -> None:
    """The VAE half's batch survives serialisation (it travels between the two worker kinds)."""
    from cardiosynth.synthesis.engine import LabelBatch

    request = SynthesisRequest(Group.RV, n=2, seed=3, severities=(0.5, 1.0), correlation="population")
    whole = _synth(data, models).run(request)
    vae_side, spade_side = _synth(data, models), _synth(data, models)
    batch = LabelBatch.from_bytes(vae_side.make_labels(request).to_bytes())
    assert batch.request == request
    parts = spade_side.assemble(batch, spade_side.translate(batch))
    for a, b in zip(whole, parts, strict=True):
        assert a.base.subject_id == b.base.subject_id
        for severity in (0.5, 1.0):
            for phase in ("ED", "ES"):
                assert np.array_equal(
                    a.phases[severity][phase].native_labels, b.phases[severity][phase].native_labels
                )
                assert np.array_equal(
                    a.phases[severity][phase].native_image, b.phases[severity][phase].native_image
                )


def test_label_batch_round_trip_keeps_the_interpolation() -> None:
    from cardiosynth.synthesis.engine import LabelBatch

    request = SynthesisRequest(Group.DCM, n=2, seed=4, correlation="paper", interpolation="shift",
                               shift_residual=0.25, base_subjects=("patient001",))  # fmt: skip
    labels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) % 4
    batch = LabelBatch(request, ["patient001", "patient001"], [(0, 1.0, "ED", 1), (1, 1.0, "ED", 1)], labels,
                       scale=ClassScale(1.06, 1.01, 1.08))  # fmt: skip
    again = LabelBatch.from_bytes(batch.to_bytes())
    assert again.request == request
    assert again.scale == ClassScale(1.06, 1.01, 1.08)
    assert again.select([1]).scale == again.scale
    assert again.request.interpolation == "shift"
    assert again.request.shift_residual == 0.25
    assert request.provenance()["interpolation"] == "shift"
    # A batch written before the field existed was made by ``sample``.
    old = LabelBatch(SynthesisRequest(Group.DCM), ["patient001"], [(0, 1.0, "ED", 1)], labels[:1])
    with np.load(io.BytesIO(old.to_bytes()), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    for key in ("interpolation", "shift_residual"):
        del meta["request"][key]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=labels[:1], meta=np.array(json.dumps(meta)))
    assert LabelBatch.from_bytes(buffer.getvalue()).request.interpolation == "sample"


def test_shift_and_paper_through_the_engine(data: Path, models: Path) -> None:
    """``shift`` without a residual is a deterministic transport of each base (the seed does not
    matter); with one, or with ``sample``, the seed does. ``paper`` runs with the base's factor."""
    from cardiosynth.synthesis.engine import target_latents
    from cardiosynth.synthesis.equalise import equalise
    from cardiosynth.synthesis.stages import encode_stacks

    synthesizer = _synth(data, models)
    bases = ("patient901", "patient902")
    requests = [
        SynthesisRequest(
            Group.HCM, n=2, seed=seed, severities=(0.5, 1.0), interpolation="shift", base_subjects=bases
        )
        for seed in (0, 5)
    ]
    batches = [synthesizer.make_labels(r) for r in requests]
    assert batches[0].plan == batches[1].plan
    assert np.array_equal(batches[0].labels, batches[1].labels)
    paper_request = SynthesisRequest(Group.HCM, n=1, correlation="paper", base_subjects=bases)
    paper = synthesizer.make_labels(paper_request)
    assert len(paper.labels) == sum(z for *_, z in paper.plan)
    hcm, nor = synthesizer.class_stats(Group.HCM, "ED"), synthesizer.class_stats(Group.NOR, "ED")
    base = synthesizer._base(synthesizer._ref("patient902")).processed.ed_label
    base_eq = equalise(encode_stacks(synthesizer.vae, [base])[0], hcm.ns)
    targets = []
    for seed in (0, 5):
        for residual in (0.0, 0.3):
            request = SynthesisRequest(Group.HCM, seed=seed, interpolation="shift", shift_residual=residual)
            # NOR to NOR: the fixture's HCM class has one subject (no spread for a residual to use).
            t = target_latents(request, nor, nor, base_eq, np.random.default_rng(seed))
            assert np.all((t >= nor.min) & (t <= nor.max))
            targets.append(t)
    assert np.array_equal(targets[0], targets[2])  # no residual: the seed does not matter
    assert not np.array_equal(targets[1], targets[3])  # with one, it does
    with pytest.raises(ValueError, match="NOR class statistics"):
        target_latents(SynthesisRequest(Group.HCM, interpolation="shift"), hcm, None, base_eq,
                       np.random.default_rng(0))  # fmt: skip


def test_cli_choices_come_from_the_modes() -> None:
    from cardiosynth.cli import build_parser
    from cardiosynth.synthesis.modes import CORRELATION_MODES, INTERPOLATIONS

    parser = build_parser()
    args = parser.parse_args(["synthesize", "--pathology", "HCM", "--out", "x", "--interpolation", "shift",
                              "--correlation", "paper"])  # fmt: skip
    assert (args.interpolation, args.correlation) == ("shift", "paper")
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    synth = sub.choices["synthesize"]  # type: ignore[index]
    options = {a.dest: a.choices for a in synth._actions}
    assert tuple(options["correlation"]) == CORRELATION_MODES
    assert tuple(options["interpolation"]) == INTERPOLATIONS
    with pytest.raises(SystemExit):
        parser.parse_args(["synthesize", "--pathology", "HCM", "--out", "x", "--interpolation", "linear"])
    # The API's schema offers the same choices.
    from cardiosynth.gateway.schemas import SynthesizeRequest

    schema = SynthesizeRequest.model_json_schema()["properties"]
    assert tuple(schema["correlation"]["enum"]) == CORRELATION_MODES
    assert tuple(schema["interpolation"]["enum"]) == INTERPOLATIONS
    assert SynthesizeRequest(pathology="HCM", n=1).interpolation == "sample"


def test_translate_reports_per_chunk_and_stops_when_the_callback_raises(
    data: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SPADE half reports after every chunk; a callback that raises (the service's cancel)
    stops it there, before the remaining chunks are translated."""
    from cardiosynth.synthesis import engine

    synth = _synth(data, models)
    batch = synth.make_labels(SynthesisRequest(Group.RV, n=1, seed=0))
    monkeypatch.setattr(engine, "TRANSLATE_CHUNK", 4)
    seen: list[tuple[str, int, int]] = []
    whole = synth.translate(batch, lambda stage, done, total: seen.append((stage, done, total)))
    total = len(batch.labels)
    assert seen[-1] == ("translate", total, total)
    assert [d for _, d, _ in seen] == [min(4 * (i + 1), total) for i in range(len(seen))]
    monkeypatch.setattr(engine, "TRANSLATE_CHUNK", 1024)
    # Chunking changes nothing beyond float rounding: CPU convolutions over a batch of 4 and of 64
    # slices may round differently (seen: 7e-6 on phantom v2 inputs). Byte identity for one
    # configuration is test_same_seed_same_bytes_and_provenance's.
    np.testing.assert_allclose(whole, synth.translate(batch), rtol=0, atol=1e-4)

    class CancelledError(Exception):
        pass

    calls = []

    def cancel_after_first(stage: str, done: int, total: int) -> None:
        calls.append(done)
        raise CancelledError

    monkeypatch.setattr(engine, "TRANSLATE_CHUNK", 4)
    with pytest.raises(CancelledError):
        synth.translate(batch, cancel_after_first)
    assert calls == [4]


def test_stream_translates_one_part_at_a_time_and_equals_the_whole(data: Path, models: Path) -> None:
    """The SPADE half a few subjects at a time (the worker's memory bound): lazily, part by part,
    the same subjects, names and arrays as translating and assembling the whole batch."""
    request = SynthesisRequest(Group.HCM, n=3, seed=1, severities=(0.5, 1.0))
    synth = _synth(data, models)
    batch = synth.make_labels(request)
    whole = synth.assemble(batch, synth.translate(batch))
    translated: list[int] = []
    original = synth.translate

    def spy(part: object, progress: object = None) -> object:
        translated.append(len(part.labels))  # type: ignore[attr-defined]
        return original(part, progress)  # type: ignore[arg-type]

    synth.translate = spy  # type: ignore[method-assign,assignment]
    seen: list[tuple[str, int, int]] = []
    stream = synth.stream(batch, lambda s, d, t: seen.append((s, d, t)), part_slices=1)
    first = next(stream)
    assert len(translated) == 1  # only the first subject's part so far
    streamed = [first, *stream]
    sizes = [sum(z for i, _, _, z in batch.plan if i == k) for k in range(3)]
    assert translated == sizes  # one subject per part, every slice translated once
    assert seen[-1] == ("translate", len(batch.labels), len(batch.labels))
    assert [s.name for s in streamed] == [s.name for s in whole] == ["HCM_000", "HCM_001", "HCM_002"]
    for a, b in zip(whole, streamed, strict=True):
        assert a.territory == b.territory
        assert a.biomarkers.keys() == b.biomarkers.keys()
        for severity in (0.5, 1.0):
            for phase in ("ED", "ES"):
                # Other batch shapes may pick other convolution kernels: equal to float rounding.
                scale = float(np.abs(a.phases[severity][phase].native_image).max())
                np.testing.assert_allclose(
                    a.phases[severity][phase].native_image,
                    b.phases[severity][phase].native_image,
                    atol=1e-4 * scale,
                )
                np.testing.assert_array_equal(
                    a.phases[severity][phase].native_labels, b.phases[severity][phase].native_labels
                )
    translated.clear()
    assert len(list(synth.stream(batch, part_slices=10**6))) == 3
    assert translated == [len(batch.labels)]  # a budget above the batch: one part
    with pytest.raises(ValueError, match="outside"):
        batch.select([3])
    with pytest.raises(ValueError, match="part_slices"):
        next(synth.stream(batch, part_slices=0))


def test_stream_overlapped_assembles_in_the_background_and_yields_the_same(data: Path, models: Path) -> None:
    """``overlap``: part k is assembled on a background thread while part k + 1 is translated, and
    with the clean-up deferred each part is cleaned there first (``run`` on a GPU); the subjects,
    their order and every array are those of the plain stream of a batch cleaned at once."""
    import threading

    request = SynthesisRequest(Group.HCM, n=3, seed=2, severities=(0.5, 1.0))
    synth = _synth(data, models)
    plain = list(synth.stream(synth.make_labels(request), part_slices=1, overlap=False))
    batch = synth.make_labels(request, defer_clean=True)
    assert batch.clean_pending
    threads: list[str] = []
    translated: list[int] = []
    original_assemble, original_translate = synth.assemble, synth.translate

    def assemble_spy(part: object, images: object) -> object:
        threads.append(threading.current_thread().name)
        return original_assemble(part, images)  # type: ignore[arg-type]

    def translate_spy(part: object, progress: object = None) -> object:
        translated.append(len(part.labels))  # type: ignore[attr-defined]
        return original_translate(part, progress)  # type: ignore[arg-type]

    synth.assemble = assemble_spy  # type: ignore[method-assign,assignment]
    synth.translate = translate_spy  # type: ignore[method-assign,assignment]
    stream = synth.stream(batch, part_slices=1, overlap=True)
    first = next(stream)
    assert len(translated) == 2  # one part ahead: the second was translated while the first assembled
    overlapped = [first, *stream]
    assert threads
    assert all(name.startswith("cardiosynth-assemble") for name in threads)
    assert [s.name for s in overlapped] == [s.name for s in plain]
    for a, b in zip(plain, overlapped, strict=True):
        # NaN where untrained models draw no LV: compared field by field
        np.testing.assert_equal(
            {k: v and dataclasses.asdict(v) for k, v in a.biomarkers.items()},
            {k: v and dataclasses.asdict(v) for k, v in b.biomarkers.items()},
        )
        for severity in (0.5, 1.0):
            for phase in ("ED", "ES"):
                np.testing.assert_array_equal(a.phases[severity][phase].native_image,
                                              b.phases[severity][phase].native_image)  # fmt: skip
                np.testing.assert_array_equal(a.phases[severity][phase].native_labels,
                                              b.phases[severity][phase].native_labels)  # fmt: skip


def test_a_batch_with_its_clean_up_pending_goes_through_stream_only(
    data: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cardiosynth.synthesis import engine

    synth = _synth(data, models)
    request = SynthesisRequest(Group.HCM, n=2, seed=0)
    cleaned = synth.make_labels(request)
    assert not cleaned.clean_pending
    calls: list[int] = []
    original = engine.clean_stacks

    def spy(labels: np.ndarray, plan: list) -> np.ndarray:
        calls.append(len(labels))
        return original(labels, plan)

    monkeypatch.setattr(engine, "clean_stacks", spy)
    pending = synth.make_labels(request, defer_clean=True)
    assert calls == []  # nothing cleaned yet
    for use in (pending.to_bytes, lambda: synth.translate(pending), lambda: synth.assemble(pending, None)):
        with pytest.raises(ValueError, match="deferred"):
            use()
    assert pending.select([1]).clean_pending
    streamed = list(synth.stream(pending, part_slices=1, overlap=False))
    assert calls == [len(pending.select([0]).labels), len(pending.select([1]).labels)]  # part by part
    for subject, expected in zip(streamed, synth.assemble(cleaned, synth.translate(cleaned)), strict=True):
        np.testing.assert_array_equal(subject.phases[1.0]["ED"].labels, expected.phases[1.0]["ED"].labels)
    assert synth.timings["clean"] > 0


def test_stream_overlapped_raises_what_the_background_assembly_raised(data: Path, models: Path) -> None:
    synth = _synth(data, models)
    batch = synth.make_labels(SynthesisRequest(Group.HCM, n=2, seed=0))

    def broken(part: object, images: object) -> object:
        raise RuntimeError("assembly failed")

    synth.assemble = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError, match="assembly failed"):
        list(synth.stream(batch, part_slices=1, overlap=True))


def test_bases_are_read_by_threads_all_returned_beyond_the_cache(data: Path, models: Path) -> None:
    """More base subjects than the cache holds: every one is returned (read once, by threads), the
    cache keeps the most recent, and a later request finds those without reading again."""
    from cardiosynth.synthesis import sources

    synth = _synth(data, models)
    synth._base_cache = 2
    refs = sources.by_group(synth.refs, Group.NOR)
    assert len(refs) >= 3
    got = synth._bases([*refs, refs[0]])  # a repeat is read once
    assert list(got) == [r.subject_id for r in refs]
    for ref in refs:
        np.testing.assert_array_equal(got[ref.subject_id].processed.ed_label,
                                      sources.load(ref).processed.ed_label)  # fmt: skip
    assert list(synth._loaded) == [r.subject_id for r in refs[-2:]]
    loads = synth.timings.get("load", 0.0)
    again = synth._bases(refs[-2:])
    assert synth.timings.get("load", 0.0) == loads  # cached: nothing read
    assert all(again[r.subject_id] is got[r.subject_id] for r in refs[-2:])


def test_the_class_scale_is_cached_and_can_be_switched_off(
    data: Path, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cardiosynth.synthesis import engine

    first = _synth(data, models, cache=tmp_path / "cache").class_scale(Group.DCM)
    (stored,) = (tmp_path / "cache" / "scale").glob("*.json")
    assert ClassScale.from_dict(json.loads(stored.read_text())) == first

    def no_read(path: Path) -> None:
        raise AssertionError(f"{path} read again: the cached class scale was not used")

    monkeypatch.setattr(engine, "read_subject", no_read)
    assert _synth(data, models, cache=tmp_path / "cache").class_scale(Group.DCM) == first
    monkeypatch.undo()
    for damaged in ("{not json", "[1.06, 1.0, 1.0]"):  # a damaged entry is measured again, not trusted
        stored.write_text(damaged)
        assert _synth(data, models, cache=tmp_path / "cache").class_scale(Group.DCM) == first
        assert ClassScale.from_dict(json.loads(stored.read_text())) == first  # and stored again
    off = _synth(data, models)
    off.scale_to_class = False
    batch = off.make_labels(SynthesisRequest(Group.DCM, n=1, seed=0))
    assert batch.scale is None
    (subject,) = off.assemble(batch, None)
    assert subject.scale(1.0) == ClassScale()
