"""The model zoo: small teachers and students from the distillation papers.

Every model is a :class:`ZooModel`. ``model(x)`` returns logits;
``model(x, with_features=True)`` returns ``(logits, Features)`` where
``Features.stages`` holds the ordered stage outputs (4-D feature maps for
convolutional nets, 2-D hidden activations for MLPs) and
``Features.embedding`` is the penultimate vector that feeds the classifier.
One convention for the whole zoo, so every method can read any model.

Models are built by name from :data:`MODELS` with :func:`build_model`; a
:class:`ModelSpec` (name + input shape + classes) is all a checkpoint needs
to rebuild its network.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Features(NamedTuple):
    stages: list[torch.Tensor]
    embedding: torch.Tensor


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a zoo model: its name and the data's shape."""

    name: str
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


class ZooModel(nn.Module):
    """Base class: subclasses implement ``extract(x) -> Features`` and own ``classifier``.

    ``stage_kind`` is "spatial" when stages are (N,C,H,W) maps and "vector" when
    they are (N,D) hidden activations; map-based methods (AT, FSP) need "spatial".
    """

    spec: ModelSpec
    stage_kind = "spatial"

    def extract(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, with_features: bool = False):
        features = self.extract(x)
        logits = self.classifier(features.embedding)
        return (logits, features) if with_features else logits


# --------------------------------------------------------------------------- MLPs
class MLP(ZooModel):
    """Fully connected net on flattened pixels (Hinton et al. 2015 use 784-1200-1200-10
    with dropout as the teacher and 784-800-800-10 as the student)."""

    stage_kind = "vector"

    def __init__(self, spec: ModelSpec, hidden: tuple[int, ...], dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        self.spec = spec
        width = spec.in_channels * spec.image_size**2
        # dropout on the pixels themselves (Srivastava et al. 2014 use 0.2 on MNIST inputs)
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout else nn.Identity()
        layers = []
        for size in hidden:
            layers.append(nn.Sequential(nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)))
            width = size
        self.hidden = nn.ModuleList(layers)
        self.classifier = nn.Linear(width, spec.num_classes)

    def extract(self, x):
        h = self.input_dropout(x.flatten(1))
        stages = []
        for layer in self.hidden:
            h = layer(h)
            stages.append(h)
        return Features(stages, h)


# --------------------------------------------------------------------------- 5-layer CNN
def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class CNN5(ZooModel):
    """Three conv+batch-norm blocks (each followed by 2x2 max pooling) and two fully
    connected layers: the seeds' "5-layer CNN" student. Wide enough to be a good
    MNIST teacher, small enough to be a CIFAR-10 student."""

    def __init__(self, spec: ModelSpec, widths=(32, 64, 128), fc=256, dropout=0.0):
        super().__init__()
        self.spec = spec
        cin = spec.in_channels
        blocks = []
        for width in widths:
            blocks.append(conv_bn_relu(cin, width))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        flat = cin * self._pooled(spec.image_size, len(widths)) ** 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, fc), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.classifier = nn.Linear(fc, spec.num_classes)

    @staticmethod
    def _pooled(size: int, times: int) -> int:
        for _ in range(times):
            size //= 2
        if size < 1:
            raise ValueError("image too small for the 5-layer CNN")
        return size

    def extract(self, x):
        stages = []
        for block in self.blocks:
            x = block(x)
            stages.append(x)
            x = F.max_pool2d(x, 2)
        return Features(stages, self.fc(x))

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits only (no stage maps wanted): each block's ReLU after its 2x2 max pooling instead of
        before. The two commute (ReLU is monotone, so the max of the ReLUs is the ReLU of the max;
        the same values and gradients bit for bit, ``tests/test_models.py``), and the ReLU and its
        backward then touch a quarter of the elements: on a Xeon with AMX, a bf16 channels-last
        training step 1.17x faster at one thread, 1.20x at two (where batch norm, ReLU and pooling,
        not the convolutions, took most of the step). With features, :meth:`extract` keeps the
        maps the methods read (after the ReLU, before the pooling)."""
        if with_features:
            return super().forward(x, with_features=True)
        for conv, norm, relu in self.blocks:
            x = relu(F.max_pool2d(norm(conv(x)), 2))
        return self.classifier(self.fc(x))


# --------------------------------------------------------------------------- ResNets
class BasicBlock(nn.Module):
    """He et al. 2016 basic residual block; ``dropout`` between the convs (as in WRN)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.dropout(out)))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ZooModel):
    """CIFAR-style ResNet (He et al. 2016, §4.2): a 3x3 stem and three stages of
    basic blocks at widths w, 2w, 4w; depth = 6n + 2. ResNet-20 is n=3, w=16.
    Wide ResNets (Zagoruyko & Komodakis 2016) are the same with wider stages."""

    def __init__(self, spec: ModelSpec, blocks_per_stage: int, widths=(16, 32, 64), stem=16, dropout=0.0):
        super().__init__()
        self.spec = spec
        self.stem = conv_bn_relu(spec.in_channels, stem)
        stages, cin = [], stem
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks_per_stage):
                layers.append(BasicBlock(cin, width, stride if b == 0 else 1, dropout))
                cin = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(cin, spec.num_classes)

    def extract(self, x):
        x = self.stem(x)
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x)
        return Features(stages, F.adaptive_avg_pool2d(x, 1).flatten(1))


# --------------------------------------------------------------------------- MobileNet
class DepthwiseSeparable(nn.Sequential):
    """Howard et al. 2017: a 3x3 depthwise conv then a 1x1 pointwise conv."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class SmallMobileNet(ZooModel):
    """A small MobileNet-style student: stem then three stages of depthwise-separable
    blocks at widths 32, 64, 128 (strides 1, 2, 2)."""

    def __init__(self, spec: ModelSpec, widths=(32, 64, 128)):
        super().__init__()
        self.spec = spec
        self.stem = conv_bn_relu(spec.in_channels, 16)
        stages, cin = [], 16
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(DepthwiseSeparable(cin, width, stride), DepthwiseSeparable(width, width, 1)))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(cin, spec.num_classes)

    extract = CifarResNet.extract


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[ModelSpec], ZooModel]
    description: str


MODELS: dict[str, ModelEntry] = {
    # Hinton et al. 2015 §3's teacher, regularised as in Srivastava et al. 2014: dropout 0.2 on the
    # inputs and 0.5 on the hidden units (the dropout layers hold no weights: older checkpoints load)
    "mlp-1200": ModelEntry(lambda s: MLP(s, (1200, 1200), dropout=0.5, input_dropout=0.2),
                           "MLP 1200-1200, dropout 0.2 on inputs and 0.5 on hidden units (Hinton's MNIST teacher)"),
    "mlp-800": ModelEntry(lambda s: MLP(s, (800, 800)), "MLP 800-800 (Hinton's MNIST student)"),
    "mlp-30": ModelEntry(lambda s: MLP(s, (30,)), "MLP with one hidden layer of 30 units (a tiny student)"),
    "cnn5": ModelEntry(lambda s: CNN5(s), "5-layer CNN: 3 conv (32/64/128) with batch norm + 2 fully connected"),
    "cnn5-dropout": ModelEntry(lambda s: CNN5(s, dropout=0.5),
                               "5-layer CNN with dropout 0.5 before the classifier (the seeds' CIFAR-10 column)"),
    "cnn5-small": ModelEntry(lambda s: CNN5(s, widths=(16, 32, 64), fc=128), "5-layer CNN at half width (16/32/64)"),
    "resnet8": ModelEntry(lambda s: CifarResNet(s, 1), "CIFAR ResNet-8 (n=1, widths 16/32/64)"),
    "resnet20": ModelEntry(lambda s: CifarResNet(s, 3), "CIFAR ResNet-20 (n=3, widths 16/32/64)"),
    "resnet56": ModelEntry(lambda s: CifarResNet(s, 9), "CIFAR ResNet-56 (n=9, widths 16/32/64)"),
    "wrn-16-2": ModelEntry(lambda s: CifarResNet(s, 2, (32, 64, 128)), "Wide ResNet 16-2"),
    "wrn-16-4": ModelEntry(lambda s: CifarResNet(s, 2, (64, 128, 256)), "Wide ResNet 16-4"),
    "wrn-40-2": ModelEntry(lambda s: CifarResNet(s, 6, (32, 64, 128)), "Wide ResNet 40-2"),
    "mobilenet": ModelEntry(lambda s: SmallMobileNet(s), "small MobileNet-style net (depthwise-separable convs)"),
}


ALIASES = {"cnn": "cnn5", "mlp": "mlp-800"}  # short names (the commands say ``--model cnn``)


MAX_IMAGE_SIDE = 128     # the largest image side a zoo model is built for (an MLP on 1500x1500 RGB: billions of weights)
MAX_CLASSES = 10_000


def check_spec(spec: ModelSpec) -> None:
    """Refuse a shape no model should be built for (before any weight is allocated: a checkpoint's
    spec comes from a file): channels 1-4, a side of 1 to :data:`MAX_IMAGE_SIDE`, 2 to
    :data:`MAX_CLASSES` classes."""
    for name, low, high in (("in_channels", 1, 4), ("image_size", 1, MAX_IMAGE_SIDE), ("num_classes", 2, MAX_CLASSES)):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"model {name.replace('_', ' ')} must be a whole number in [{low}, {high}], got {value!r}")


def build_model(name: str, in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> ZooModel:
    """Build a zoo model by name; unknown names raise ``ValueError`` listing the known ones."""
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    spec = ModelSpec(name, in_channels, image_size, num_classes)
    check_spec(spec)
    return MODELS[name].build(spec)


def build_from_spec(spec: ModelSpec | dict) -> ZooModel:
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec(**spec)
    return build_model(spec.name, spec.in_channels, spec.image_size, spec.num_classes)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, repeats: int = 20) -> float:
    """Median wall time of one forward pass per image, in milliseconds, on CPU/GPU of the model."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros((batch_size, *input_shape), device=device)
    model(x)  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    model.train(was_training)
    times.sort()
    return 1000 * times[len(times) // 2] / batch_size


def model_summary(model: ZooModel) -> dict:
    """Parameter count and measured inference latency per image (batch 1)."""
    spec = model.spec
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    return {"params": parameter_count(model), "latency_ms": measure_latency(model, shape)}


@torch.no_grad()
def forward_features(model: ZooModel, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
    """Logits and features of ``model`` on ``x`` in eval mode, as float32 on the CPU.

    The model's train/eval mode is restored afterwards, so this is safe to call between
    two training steps."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, features = model(x.to(device), with_features=True)
    model.train(was_training)
    cpu = lambda t: t.detach().float().cpu()  # noqa: E731
    return cpu(logits), Features([cpu(s) for s in features.stages], cpu(features.embedding))
