"""The GPU path: data resident on the GPU gives the same batches as on the CPU, and a run there
trains. The CUDA tests are skipped on a machine without a GPU (CI has none); they run on the
lent GPU machine with ``benchmarks/gpu_run.sh``."""
from __future__ import annotations

import pytest
import torch

from kdviz import data
from kdviz.data import ImageData, batches, on_device, random_crop_flip, random_shift

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _images(n=300, channels=3, side=32, seed=0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, channels, side, side), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData("made-up", "train", pixels, labels, tuple("abcdefghij"), (0.5,) * channels, (0.25,) * channels)


def test_on_device_keeps_cpu_data_as_it_is():
    images = _images()
    assert on_device(images, "cpu") is images


def test_crop_flip_and_shift_pick_windows_of_the_padded_image():
    """Each augmented image is a window of the padded original: a crop or its mirror image."""
    images = _images(n=40)
    x = images.images()
    out = random_crop_flip(x, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (4,) * 4)
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    shifted = random_shift(images.pixels[:10], 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images.pixels[:10], (2,) * 4)
    for i in range(10):
        assert any(torch.equal(shifted[i], padded[i, :, dy:dy + 32, dx:dx + 32]) for dy in range(5) for dx in range(5))


@cuda
@pytest.mark.parametrize("augment,jitter", [(False, 0), (True, 0), (False, 2)])
def test_batches_from_gpu_memory_match_the_cpu_ones(augment, jitter):
    images = _images()
    resident = on_device(images, "cuda")
    assert resident.pixels.is_cuda and resident.labels.is_cuda
    cpu = list(batches(images, 64, True, torch.Generator().manual_seed(1), augment, "cpu", jitter))
    gpu = list(batches(resident, 64, True, torch.Generator().manual_seed(1), augment, "cuda", jitter))
    assert len(cpu) == len(gpu) == 5
    for a, b in zip(cpu, gpu):
        assert b.x.is_cuda and b.y.is_cuda and not b.index.is_cuda
        assert torch.equal(a.index, b.index) and torch.equal(a.y, b.y.cpu())
        torch.testing.assert_close(a.x, b.x.cpu())


@cuda
def test_a_kd_run_on_the_gpu_learns_like_one_on_the_cpu():
    """scikit-learn's digits: a teacher, then a KD student, on CUDA (bf16) and on the CPU (fp32)."""
    from kdviz.methods import build_method
    from kdviz.models import build_model
    from kdviz.train import TrainSettings, fit

    splits = data.load("digits")
    scores = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16")):
        torch.manual_seed(0)
        teacher = build_model("cnn5", 1, 8)
        settings = TrainSettings(epochs=8, batch_size=64, lr=0.05, seed=0, device=device, precision=precision)
        *_, done = fit(teacher, build_method("baseline", teacher), splits.train, splits.test, settings)
        student = build_model("mlp-800", 1, 8)
        *_, kd = fit(student, build_method("kd", student, teacher), splits.train, splits.test, settings, teacher)
        assert next(student.parameters()).is_cuda == (device == "cuda")
        scores[device] = (done.test_acc, kd.test_acc)
    for cpu, gpu in zip(scores["cpu"], scores["cuda"]):
        assert gpu > 0.85 and abs(gpu - cpu) < 0.05, scores
