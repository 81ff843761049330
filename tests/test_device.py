"""The device seam (cardiosynth.device) and what uses it: resolution and its errors, precision and
autocast, batch sizes, training on a device, and the CPU path unchanged.

Every test runs on CPU; those marked ``gpu`` run only where CUDA is available (skipped elsewhere)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cardiosynth import device as dev
from cardiosynth.models.slices import SliceSet
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.training import BatchFeed, epoch_batches, load_checkpoint, training_precision
from cardiosynth.models.vae import LabelVAE, VAEConfig

CUDA = torch.cuda.is_available()


def gpu(test: Any) -> Any:
    """Marked ``gpu`` (``pytest -m gpu`` selects them) and skipped where CUDA is not available."""
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="needs a CUDA device")(test))


# -- resolution ---------------------------------------------------------------------------------


def test_cpu_and_auto_resolve_on_this_machine() -> None:
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device(" CPU ") == torch.device("cpu")
    assert dev.resolve_device(None).type == ("cuda" if CUDA else "cpu")
    assert dev.resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    assert dev.resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda0", "cpu:0", "cuda:-1", "", "mps", "cuda:x"])
def test_bad_device_spec_is_named(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown device") as info:
        dev.resolve_device(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.skipif(CUDA, reason="checks the error of a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ValueError, match="CUDA is not available") as info:
        dev.resolve_device(spec)
    assert repr(spec) in str(info.value)
    assert "--device cpu" in str(info.value)


def test_cuda_without_cuda_even_when_torch_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        dev.resolve_device("cuda")
    assert dev.resolve_device("auto") == torch.device("cpu")


def test_cuda_index_beyond_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert dev.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"'cuda:1'.*only 1 CUDA device"):
        dev.resolve_device("cuda:1")


# -- precision and autocast ---------------------------------------------------------------------


def test_default_precision_per_device() -> None:
    assert dev.resolve_precision(None, torch.device("cpu")) == "fp32"
    assert dev.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert dev.resolve_precision(None, torch.device("cuda")) == "bf16"
    assert dev.resolve_precision("fp16", torch.device("cuda")) == "fp16"
    assert dev.resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_fp16_on_cpu_and_unknown_precision_refused() -> None:
    with pytest.raises(ValueError, match="'fp16' is not supported on the CPU"):
        dev.resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown precision 'fp64'"):
        dev.resolve_precision("fp64", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown precision 'half'"), dev.precision_scope("half"):
        pass


def test_precision_scope_sets_the_default_and_is_undone() -> None:
    cpu = torch.device("cpu")
    with dev.precision_scope("bf16"):
        assert dev.resolve_precision(None, cpu) == "bf16"
        assert dev.resolve_precision("fp32", cpu) == "fp32"  # an explicit choice wins
    assert dev.resolve_precision(None, cpu) == "fp32"


def test_autocast_selection_on_cpu() -> None:
    cpu = torch.device("cpu")
    x, w = torch.randn(4, 8), torch.randn(8, 3)
    with dev.autocast(cpu, "fp32"):
        assert (x @ w).dtype == torch.float32
    with dev.autocast(cpu, "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with dev.precision_scope("bf16"), dev.autocast(cpu):
        assert (x @ w).dtype == torch.bfloat16
    with dev.autocast(cpu):  # the CPU default: no autocast at all
        assert (x @ w).dtype == torch.float32
    with pytest.raises(ValueError, match="fp16"):
        dev.autocast(cpu, "fp16")


def test_training_refuses_fp16() -> None:
    assert training_precision(None, torch.device("cpu")) == "fp32"
    assert training_precision(None, torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match=r"fp16.*not supported for training"):
        training_precision("fp16", torch.device("cuda"))


# -- placement and results ----------------------------------------------------------------------


def test_place_and_to_model_on_cpu_are_no_copies() -> None:
    model = torch.nn.Linear(3, 2)
    assert dev.place(model, "cpu") is model
    assert dev.model_device(model) == torch.device("cpu")
    x = torch.ones(2, 3)
    assert dev.to_model(x, model) is x
    assert dev.model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters


def test_to_numpy_returns_cpu_float32_for_half_types() -> None:
    out = dev.to_numpy(torch.ones(2, requires_grad=True).to(torch.bfloat16))
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    assert dev.to_numpy(torch.arange(3, dtype=torch.uint8)).dtype == np.uint8


# -- batch sizes --------------------------------------------------------------------------------


def test_batch_size_falls_back_to_the_cpu_default() -> None:
    cpu = torch.device("cpu")
    assert dev.batch_size_for(cpu, 10**6, cpu_default=256) == 256
    assert dev.batch_size_for(cpu, 10**6, cpu_default=64, setting=7) == 7
    with pytest.raises(ValueError, match="setting must be positive, got 0"):
        dev.batch_size_for(cpu, 10**6, cpu_default=64, setting=0)
    with pytest.raises(ValueError, match="item_bytes >= 1"):
        dev.batch_size_for(cpu, 0, cpu_default=64)


def test_batch_size_from_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 24 GB card with 20 GB free and 100 MB per item: 60 % of 20 GB / 100 MB = 120 items.
    monkeypatch.setattr(dev, "free_memory", lambda device: (20 * 10**9, 24 * 10**9))
    cuda = torch.device("cuda")
    assert dev.batch_size_for(cuda, 100 * 10**6, cpu_default=64) == 120
    assert dev.batch_size_for(cuda, 10, cpu_default=64, cap=512) == 512
    assert dev.batch_size_for(cuda, 10**12, cpu_default=64) == 1  # never 0
    assert dev.batch_size_for(cuda, 100 * 10**6, cpu_default=64, setting=9) == 9


def test_activation_bytes_estimate_on_cpu() -> None:
    model = torch.nn.Conv2d(1, 4, 3, padding=1)
    per_item = dev.activation_bytes(model, (torch.zeros(2, 1, 8, 8),))
    assert per_item == 4 * 4 * 8 * 8 * 4  # 4 x the output's bytes per item


def test_describe_cpu() -> None:
    info = dev.describe("cpu")
    assert info["device"] == "cpu"
    assert info["name"]
    assert info["torch"] == torch.__version__
    assert info["memory_total_mib"] is None or info["memory_total_mib"] > 0


def test_loader_options_per_device() -> None:
    assert dev.loader_options(torch.device("cpu")) == {"num_workers": 0, "pin_memory": False}
    cuda = dev.loader_options(torch.device("cuda"))
    assert cuda["pin_memory"] is True
    assert cuda["num_workers"] >= 1


# -- training on a device -----------------------------------------------------------------------


def test_batch_feed_on_cpu_is_the_old_indexing() -> None:
    labels = torch.arange(10 * 2 * 2).view(10, 2, 2)
    images = torch.randn(10, 1, 2, 2)
    feed = BatchFeed((labels, images), batch_size=4, seed=3, device=torch.device("cpu"))
    for epoch in range(2):
        n, batches = feed.epoch(epoch)
        expected = list(epoch_batches(10, 4, 3, epoch))
        got = list(batches)
        assert n == len(expected) == len(got)
        for idx, (lab, img) in zip(expected, got, strict=True):
            assert torch.equal(lab, labels[idx])
            assert torch.equal(img, images[idx])
    with pytest.raises(ValueError, match="one length"):
        BatchFeed((labels, images[:3]), 4, 0, torch.device("cpu"))


def _tiny_slices(n: int = 6, size: int = 32) -> SliceSet:
    rng = np.random.default_rng(0)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r = 4 + i % 3
        yy, xx = np.mgrid[:size, :size]
        labels[i][(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < (r + 3) ** 2] = 2
        labels[i][(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < r**2] = 3
    images = (labels / 3.0 * 2 - 1 + 0.05 * rng.standard_normal(labels.shape)).astype(np.float32)
    subject = np.arange(n, dtype=np.int64) // 2
    ids = tuple(f"s{i}" for i in range(n // 2))
    return SliceSet(labels=labels, images=images, subject=subject, phase=np.zeros(n, np.int64),
                    position=np.arange(n, dtype=np.int64) % 2, subject_ids=ids,
                    groups=("NOR",) * (n // 2))  # fmt: skip


def test_vae_checkpoint_reloads_on_cpu_and_resumes(tmp_path: Path) -> None:
    """A run saved by the device path reloads with map_location cpu (what a CUDA checkpoint needs)
    and resumes to exactly the result of an uninterrupted run."""
    from cardiosynth.models.train_vae import VAETrainConfig, train_vae

    slices = _tiny_slices()
    config = VAETrainConfig(epochs=2, batch_size=3, latent_dim=4)
    small = VAEConfig(latent_dim=4, image_size=32, channels=(2, 2, 2, 2), fc_features=(8, 8, 8))
    # The preset's model is 128 x 128; a 32 x 32 one keeps this test quick.
    monkey = pytest.MonkeyPatch()
    monkey.setattr(VAETrainConfig, "model_config", lambda self: small)
    try:
        whole, _ = train_vae(slices, None, config, tmp_path / "a", show_progress=False, device="cpu")
        once = VAETrainConfig(epochs=1, batch_size=3, latent_dim=4)
        train_vae(slices, None, once, tmp_path / "b", show_progress=False, device="cpu")
        state = load_checkpoint(tmp_path / "b")
        assert state is not None
        assert state["epoch"] == 1
        assert "cuda_rng" not in state
        assert all(t.device.type == "cpu" for t in state["model"].values())
        resumed, history = train_vae(slices, None, config, tmp_path / "b", resume=True,
                                     show_progress=False, device="cpu")  # fmt: skip
    finally:
        monkey.undo()
    assert len(history) == 2
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    reloaded = LabelVAE(small)
    reloaded.load_state_dict(torch.load(tmp_path / "b" / "checkpoint.pt", map_location="cpu")["model"])
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, whole.state_dict()[key]), key


@gpu
def test_gpu_vae_training_step_and_cpu_reload(tmp_path: Path) -> None:
    from cardiosynth.models.train_vae import VAETrainConfig, reconstruct, train_vae

    slices = _tiny_slices()
    small = VAEConfig(latent_dim=4, image_size=32, channels=(4, 4, 4, 4), fc_features=(8, 8, 8))
    monkey = pytest.MonkeyPatch()
    monkey.setattr(VAETrainConfig, "model_config", lambda self: small)
    try:
        config = VAETrainConfig(epochs=1, batch_size=3, latent_dim=4)
        model, history = train_vae(slices, None, config, tmp_path, show_progress=False, device="cuda")
    finally:
        monkey.undo()
    assert dev.model_device(model).type == "cuda"
    assert np.isfinite(history[0]["loss"])
    state = load_checkpoint(tmp_path)
    assert state is not None
    assert "cuda_rng" in state
    cpu_model = LabelVAE(small)
    cpu_model.load_state_dict(state["model"])
    out = reconstruct(model, slices.labels, precision="fp32")
    assert out.dtype == np.uint8
    assert out.shape == slices.labels.shape
    assert np.mean(out == reconstruct(cpu_model, slices.labels)) > 0.99


@gpu
def test_gpu_spade_training_step_and_cpu_reload(tmp_path: Path) -> None:
    from cardiosynth.models.train_spade import SpadeTrainConfig, train_spade

    slices = _tiny_slices(size=64)  # the patch discriminator needs at least 64 pixels
    small = SpadeConfig(image_size=64, channels=(4, 8), style_dim=4, spade_hidden=4, head_channels=4)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(SpadeTrainConfig, "model_config", lambda self: small)
    try:
        config = SpadeTrainConfig(epochs=1, batch_size=3, style_dim=4, discriminator_channels=4)
        model, history = train_spade(slices, None, config, tmp_path, show_progress=False, device="cuda")
    finally:
        monkey.undo()
    assert dev.model_device(model).type == "cuda"
    assert all(np.isfinite(v) for k, v in history[0].items() if isinstance(v, float))
    state = load_checkpoint(tmp_path)
    assert state is not None
    assert all(t.device.type == "cpu" for t in state["generator"].values())
    cpu_model = SpadeTranslator(small)
    cpu_model.load_state_dict(state["generator"])
    refs = slices.images[:, None]
    with torch.no_grad():
        on_gpu = model.translate(dev.to_model(torch.from_numpy(slices.labels.astype(np.int64)), model),
                                 dev.to_model(torch.from_numpy(refs), model)).cpu()  # fmt: skip
        on_cpu = cpu_model.eval().translate(torch.from_numpy(slices.labels.astype(np.int64)),
                                            torch.from_numpy(refs))  # fmt: skip
    # The checkpoint holds exactly the trained weights; the two forward passes differ by the GPU's
    # arithmetic alone (TF32 convolutions, instance norms of 4 channels: on an H200 most values agree
    # to 5e-4 and a few were more than 5e-3 apart, so the mean is what is compared).
    for key, value in model.state_dict().items():
        assert torch.equal(value.cpu(), state["generator"][key]), key
    assert (on_gpu - on_cpu).abs().mean() < 2e-3


def _pipeline_models() -> tuple[LabelVAE, SpadeTranslator]:
    """Tiny untrained networks of the phantom's image size, the same weights on every call."""
    torch.manual_seed(0)
    return LabelVAE(VAEConfig(latent_dim=4, channels=(2, 2, 4, 4), fc_features=(8, 8, 8))), (
        SpadeTranslator(SpadeConfig(channels=(2, 2, 2, 2), style_dim=2, spade_hidden=2, head_channels=2))
    )


@gpu
def test_gpu_run_streams_overlapped_and_matches_cpu(phantom_root: Path) -> None:
    """``run`` on CUDA goes through the overlapped stream (parts assembled on a background thread):
    the same subjects, in order, as the CPU's run, native labels and images within float error."""
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    # 5 subjects x 2 severities x 2 phases: over 128 slices, so the GPU streams them in several parts.
    request = SynthesisRequest(pathology=Group.HCM, n=5, seed=0, severities=(0.5, 1.0))
    runs = {}
    for device in ("cpu", "cuda"):
        synth = Synthesizer(*_pipeline_models(), phantom_root, device=device, precision="fp32", batch_size=16)
        runs[device] = synth.run(request)
    names = [f"HCM_{i:03d}" for i in range(5)]
    assert [s.name for s in runs["cuda"]] == [s.name for s in runs["cpu"]] == names
    for a, b in zip(runs["cpu"], runs["cuda"], strict=True):
        for severity in (0.5, 1.0):
            for phase in ("ED", "ES"):
                x, y = a.phases[severity][phase], b.phases[severity][phase]
                assert isinstance(y.native_image, np.ndarray)
                assert isinstance(y.native_labels, np.ndarray)
                assert np.mean(x.native_labels == y.native_labels) > 0.999
                assert np.abs(x.native_image - y.native_image).max() < 1e-2 * np.abs(x.native_image).max()


@gpu
def test_gpu_synthesizer_matches_cpu(phantom_root: Path) -> None:
    """The whole pipeline on CUDA in fp32 makes the CPU's labels and images (within float error),
    as CPU arrays; in bf16 (the CUDA default) the labels stay close."""
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    request = SynthesisRequest(pathology=Group.HCM, n=2, seed=0)
    out = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", None)):
        synth = Synthesizer(*_pipeline_models(), phantom_root, device=device, precision=precision)
        assert synth.device.type == device
        batch = synth.make_labels(request)
        images = synth.translate(batch)
        assert isinstance(batch.labels, np.ndarray)
        assert isinstance(images, np.ndarray)
        out[(device, synth.precision)] = (batch.labels, images)
    cpu_labels, cpu_images = out[("cpu", "fp32")]
    gpu_labels, gpu_images = out[("cuda", "fp32")]
    assert np.mean(gpu_labels == cpu_labels) > 0.999
    assert np.abs(gpu_images - cpu_images).max() < 1e-2
    bf16_labels, _ = out[("cuda", "bf16")]
    assert np.mean(bf16_labels == cpu_labels) > 0.98


@gpu
def test_gpu_describe_names_the_card_and_its_memory() -> None:
    """What a worker's heartbeat and GET /models report about its GPU."""
    info = dev.describe("cuda")
    assert info["device"] == f"cuda:{torch.cuda.current_device()}"
    assert info["name"] == torch.cuda.get_device_name(0)
    assert 0 < info["memory_free_mib"] <= info["memory_total_mib"]
    assert dev.resolve_precision(None, dev.resolve_device("cuda")) == "bf16"


# -- command line -------------------------------------------------------------------------------


def test_train_device_options_reach_the_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cardiosynth.models.train_spade as train_spade
    import cardiosynth.models.train_vae as train_vae
    from cardiosynth.cli import main

    seen: dict[str, object] = {}

    def fake(data: Path, run_dir: Path, config: object, **kwargs: object) -> Path:
        seen.update(kwargs)
        (tmp_path / "card.json").write_text('{"metrics": {}}', encoding="utf-8")
        return tmp_path

    monkeypatch.setattr(train_vae, "run_vae_training", fake)
    monkeypatch.setattr(train_spade, "run_spade_training", fake)
    common = ["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(["train", "vae", *common, "--device", "CPU", "--precision", "bf16"]) == 0
    assert (seen["device"], seen["precision"]) == ("cpu", "bf16")
    assert main(["train", "spade", *common]) == 0
    assert (seen["device"], seen["precision"]) == ("auto", None)


def test_bad_device_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from cardiosynth.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "vae", "--data", ".", "--out", ".", "--device", "gpu0"])
    assert info.value.code == 2
    assert "'gpu0'" in capsys.readouterr().err


@pytest.mark.skipif(CUDA, reason="checks the error of a machine without CUDA")
def test_train_on_cuda_without_cuda_fails_cleanly(tmp_path: Path, phantom_root: Path) -> None:
    from cardiosynth.cli import main

    code = main(["train", "vae", "--data", str(phantom_root), "--out", str(tmp_path), "--epochs", "1",
                 "--device", "cuda", "--quiet"])  # fmt: skip
    assert code == 2
    assert not (tmp_path / "checkpoint.pt").exists()


# -- stages on a device: the CPU path unchanged --------------------------------------------------

VAE_TINY = VAEConfig(image_size=32, channels=(2, 4, 4, 8), fc_features=(16, 16, 8), latent_dim=4)


def _tiny_models() -> tuple[LabelVAE, SpadeTranslator]:
    torch.manual_seed(0)
    vae = LabelVAE(VAE_TINY).eval()
    spade = SpadeTranslator(
        SpadeConfig(image_size=32, channels=(4, 8), style_dim=4, spade_hidden=4, head_channels=4)
    ).eval()
    return vae, spade


def _previous_decode(vae: LabelVAE, latents: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """decode_latents as it was before the device seam (commit 4dbe486), for comparison."""
    z_all = np.asarray(latents, dtype=np.float32)
    out = []
    with torch.no_grad():
        for start in range(0, len(z_all), batch_size):
            z = torch.from_numpy(z_all[start : start + batch_size])
            out.append(vae.decode(z).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out)


def _previous_translate(spade: SpadeTranslator, labels: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """translate_array as it was before the device seam (batches of 64, no autocast)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(labels), 64):
            lab = torch.from_numpy(np.asarray(labels[start : start + 64], dtype=np.int64))
            ref = torch.from_numpy(np.asarray(refs[start : start + 64], dtype=np.float32))[:, None]
            out.append(spade.translate(lab, ref)[:, 0].numpy())
    return np.concatenate(out).astype(np.float32)


def test_cpu_stages_equal_the_previous_path_bit_for_bit() -> None:
    from cardiosynth.synthesis.stages import decode_latents, stage_batch_size, translate_slices

    vae, spade = _tiny_models()
    latents = np.random.default_rng(1).normal(size=(300, 4)) * 2  # more than one batch of 256
    labels = decode_latents(vae, latents)
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, _previous_decode(vae, latents))
    refs = np.random.default_rng(2).uniform(-1, 1, (70, 32, 32)).astype(np.float32)
    images = translate_slices(spade, labels[:70], refs)
    assert images.dtype == np.float32
    assert np.array_equal(images, _previous_translate(spade, labels[:70], refs))
    assert stage_batch_size(vae, "decode") == 256
    assert stage_batch_size(spade, "translate") == 64
    assert stage_batch_size(spade, "translate", setting=5) == 5


def test_bf16_on_cpu_runs_and_stays_close() -> None:
    from cardiosynth.synthesis.stages import decode_latents, translate_slices

    vae, spade = _tiny_models()
    latents = np.random.default_rng(1).normal(size=(20, 4))
    fp32 = decode_latents(vae, latents, precision="fp32")
    bf16 = decode_latents(vae, latents, precision="bf16")
    assert bf16.dtype == np.uint8
    assert bf16.shape == fp32.shape
    assert np.mean(bf16 == fp32) > 0.9
    refs = np.zeros((20, 32, 32), np.float32)
    images = translate_slices(spade, fp32, refs, precision="bf16")
    assert images.dtype == np.float32
    assert np.abs(images - translate_slices(spade, fp32, refs)).max() < 0.1
    with pytest.raises(ValueError, match="fp16"):
        decode_latents(vae, latents, precision="fp16")


def test_synthesizer_on_device_cpu_equals_the_default(phantom_root: Path) -> None:
    """Synthesizer(device="cpu") is the old synthesizer: same labels and images, CPU arrays."""
    from cardiosynth.data.labels import Group
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    def models() -> tuple[LabelVAE, SpadeTranslator]:
        torch.manual_seed(0)
        return LabelVAE(VAEConfig(latent_dim=4, channels=(2, 2, 4, 4), fc_features=(8, 8, 8))), (
            SpadeTranslator(SpadeConfig(channels=(2, 2, 2, 2), style_dim=2, spade_hidden=2, head_channels=2))
        )

    request = SynthesisRequest(pathology=Group.HCM, n=1, seed=0, phases=("ED",))
    runs = []
    for device in (None, "cpu"):
        vae, spade = models()
        synth = Synthesizer(vae, spade, phantom_root, device=device)
        assert synth.device == torch.device("cpu")
        assert synth.precision == "fp32"
        batch = synth.make_labels(request)
        runs.append((batch.labels, synth.translate(batch)))
    (labels_a, images_a), (labels_b, images_b) = runs
    assert isinstance(labels_b, np.ndarray)
    assert isinstance(images_b, np.ndarray)
    assert np.array_equal(labels_a, labels_b)
    assert np.array_equal(images_a, images_b)
    with pytest.raises(ValueError, match="fp16"):
        Synthesizer(*models(), phantom_root, precision="fp16")


@gpu
def test_gpu_stages_match_cpu_and_return_cpu_arrays() -> None:
    from cardiosynth.synthesis.stages import decode_latents, translate_slices

    vae, spade = _tiny_models()
    latents = np.random.default_rng(1).normal(size=(40, 4))
    refs = np.random.default_rng(2).uniform(-1, 1, (40, 32, 32)).astype(np.float32)
    cpu_labels = decode_latents(vae, latents)
    cpu_images = translate_slices(spade, cpu_labels, refs)
    dev.place(vae, "cuda")
    dev.place(spade, "cuda")
    labels = decode_latents(vae, latents, precision="fp32")
    images = translate_slices(spade, cpu_labels, refs, precision="fp32")
    assert isinstance(labels, np.ndarray)
    assert isinstance(images, np.ndarray)
    assert np.mean(labels == cpu_labels) > 0.999
    # fp32 on CUDA is not the CPU's arithmetic bit for bit: cuDNN convolutions may use TF32 (torch's
    # default for convolutions); measured on an H200, at most 1.2e-3 apart on images in [-1, 1].
    assert np.abs(images - cpu_images).max() < 5e-3
    bf16 = translate_slices(spade, cpu_labels, refs)  # the CUDA default
    assert np.abs(bf16 - cpu_images).mean() < 0.05


class _StopError(Exception):
    """Raised by a stand-in core function once it has seen its arguments."""


def test_synthesize_and_evaluate_options_reach_the_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cardiosynth.cli.synthesize as synthesize
    import cardiosynth.evaluation.models as evaluation
    from cardiosynth.cli import main

    seen: dict[str, object] = {}

    def fake_synthesizer(*args: object, **kwargs: object) -> object:
        seen.update(kwargs)
        raise _StopError

    def fake_evaluate(data: Path, refs: evaluation.ModelRefs, **kwargs: object) -> object:
        seen.update(device=refs.device, precision=dev.resolve_precision(None, torch.device("cpu")))
        raise _StopError

    monkeypatch.setattr(synthesize, "_synthesizer", fake_synthesizer)
    monkeypatch.setattr(evaluation, "evaluate_models", fake_evaluate)
    out = ["--out", str(tmp_path / "out")]
    with pytest.raises(_StopError):
        main(["synthesize", "--pathology", "HCM", *out, "--device", "cuda:1", "--precision", "fp16"])
    assert (seen["device"], seen["precision"]) == ("cuda:1", "fp16")
    with pytest.raises(_StopError):
        main(["synthesize", "--pathology", "HCM", *out])
    assert (seen["device"], seen["precision"]) == ("auto", None)
    with pytest.raises(_StopError):
        main(["evaluate", "models", "--data", str(tmp_path), *out, "--device", "cpu", "--precision", "bf16"])
    assert (seen["device"], seen["precision"]) == ("cpu", "bf16")  # the scope reached the core
    assert dev.resolve_precision(None, torch.device("cpu")) == "fp32"  # and ended with the command


def test_model_refs_place_models_on_the_device() -> None:
    from cardiosynth.evaluation.models import ModelRefs

    vae, spade = ModelRefs(device="cpu").load()
    assert dev.model_device(vae.module) == torch.device("cpu")
    assert dev.model_device(spade.module) == torch.device("cpu")


# -- workers say where they compute --------------------------------------------------------------


def test_worker_settings_device_and_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pydantic_settings", reason="service dependencies not installed")
    from pydantic import ValidationError

    from cardiosynth.workers.settings import WorkerSettings

    assert (WorkerSettings().device, WorkerSettings().precision, WorkerSettings().batch_size) == (
        "auto",
        "auto",
        None,
    )
    monkeypatch.setenv("CARDIOSYNTH_DEVICE", "CUDA:1")
    monkeypatch.setenv("CARDIOSYNTH_PRECISION", "bf16")
    monkeypatch.setenv("CARDIOSYNTH_BATCH_SIZE", "")
    s = WorkerSettings()
    assert (s.device, s.precision, s.batch_size) == ("cuda:1", "bf16", None)
    monkeypatch.setenv("CARDIOSYNTH_DEVICE", "gpu")
    with pytest.raises(ValidationError, match="'gpu'"):
        WorkerSettings()
    monkeypatch.setenv("CARDIOSYNTH_DEVICE", "cpu")
    monkeypatch.setenv("CARDIOSYNTH_PRECISION", "fp64")
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_device_record_from_beat_to_get_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi", reason="service dependencies not installed")
    pytest.importorskip("celery", reason="service dependencies not installed")
    from types import SimpleNamespace

    from cardiosynth.gateway.routes.meta import worker_devices
    from cardiosynth.jobs.sqlite_store import SqliteJobStore
    from cardiosynth.storage.local import LocalStore
    from cardiosynth.workers import liveness, runtime

    jobs = SqliteJobStore(tmp_path / "jobs.db")
    store = LocalStore(tmp_path / "store", signing_key=b"k" * 16)
    monkeypatch.setattr(runtime, "jobs", lambda: jobs)
    monkeypatch.setattr(runtime, "storage", lambda: store)
    info = liveness.device_info("cpu", "auto")
    assert (info["device"], info["precision"], info["configured"]) == ("cpu", "fp32", "cpu")
    beat = liveness.LivenessBeat("spade@host-1", ["spade"], every_s=5, ttl_s=20, info=info)
    key = liveness.info_key("spade", "spade@host-1")
    assert key == "workers/spade/spade-host-1.json"
    beat.start()  # the first beat writes the record at once
    for _ in range(100):
        if store.exists(key):
            break
        time.sleep(0.05)
    assert store.exists(key)
    # A record left by a worker that died (no current beat) is not reported.
    store.put_bytes("workers/vae/gone.json", b'{"name": "vae@gone", "queue": "vae", "device": "cuda:0"}')
    svc = SimpleNamespace(storage=store, jobs=jobs)
    devices = worker_devices(svc)  # type: ignore[arg-type]
    assert list(devices) == ["spade"]
    (worker,) = devices["spade"]
    assert (worker.name, worker.device, worker.precision) == ("spade@host-1", "cpu", "fp32")
    assert worker.device_name == info["name"]
    beat.stop()
    assert not store.exists(key)
    assert worker_devices(svc) == {}  # type: ignore[arg-type]


def test_a_device_that_cannot_be_had_is_reported_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("celery", reason="service dependencies not installed")
    from cardiosynth.workers import liveness

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = liveness.device_info("cuda", "auto")
    assert info["device"] == "cuda"
    assert "CUDA is not available" in info["error"]
    assert liveness.device_info("cuda:0", "bf16", query_gpu=False)["device"] == "cuda:0"


def test_a_memory_limit_needs_cuda() -> None:
    with pytest.raises(ValueError, match="'cpu'"):
        dev.limit_memory("cpu", 2**30)


@gpu
def test_gpu_memory_limit_shrinks_free_memory_and_batches() -> None:
    """A 24 GB card simulated on a larger one: free memory and the batch sizes chosen from it."""
    from cardiosynth.synthesis.stages import stage_batch_size

    cuda = dev.resolve_device("cuda")
    _, total = torch.cuda.mem_get_info(cuda)
    with pytest.raises(ValueError, match="not within"):
        dev.limit_memory(cuda, total + 1)
    vae = dev.place(LabelVAE(VAEConfig()), cuda).eval()
    unlimited = stage_batch_size(vae, "decode", "bf16")
    try:
        dev.limit_memory(cuda, 2**30)
        free, limit = dev.free_memory(cuda) or (0, 0)
        assert limit == 2**30
        assert 0 < free <= 2**30
        assert stage_batch_size(vae, "decode", "bf16") < unlimited
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, torch.cuda.current_device())
        dev._LIMITS.clear()
