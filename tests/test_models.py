"""kdviz.models: every net of the zoo, its (logits, Features) convention, sizes and summary."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kdviz.models import MODELS, Features, ModelSpec, build_from_spec, build_model, model_summary, parameter_count

# stage widths of every model (channels of the stage maps, or hidden units of an MLP)
WIDTHS = {
    "mlp-1200": (1200, 1200), "mlp-800": (800, 800), "mlp-30": (30,),
    "cnn5": (32, 64, 128), "cnn5-dropout": (32, 64, 128), "cnn5-small": (16, 32, 64),
    "resnet8": (16, 32, 64), "resnet20": (16, 32, 64), "resnet56": (16, 32, 64),
    "wrn-16-2": (32, 64, 128), "wrn-16-4": (64, 128, 256), "wrn-40-2": (32, 64, 128),
    "mobilenet": (32, 64, 128),
}
SHAPES = [(1, 28), (3, 32), (1, 8)]


def test_every_model_is_covered():
    assert set(WIDTHS) == set(MODELS)


@pytest.mark.parametrize("channels,size", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", list(MODELS))
def test_logits_and_features(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, channels, size, num_classes=7).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        logits, features = model(x, with_features=True)
        plain = model(x)
    assert isinstance(features, Features)
    assert logits.shape == (3, 7) and torch.equal(logits, plain)
    assert features.embedding.shape == (3, model.classifier.in_features)
    assert torch.allclose(model.classifier(features.embedding), logits)
    stages = features.stages
    if model.stage_kind == "vector":
        assert [tuple(s.shape) for s in stages] == [(3, w) for w in WIDTHS[name]]
    else:
        # three stages, each at half the previous resolution, the first at the input's
        expected = [(3, w, -(-size // 2**i), -(-size // 2**i)) for i, w in enumerate(WIDTHS[name])]
        assert [tuple(s.shape) for s in stages] == expected


def test_features_carry_gradients():
    model = build_model("resnet8", 3, 32)
    logits, features = model(torch.randn(2, 3, 32, 32), with_features=True)
    features.stages[0].pow(2).mean().backward()
    assert model.stem[0].weight.grad.abs().sum() > 0


def _mlp_params(sizes):
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def _resnet_params(n, widths, cin=3, stem=16, classes=10):
    total = 9 * cin * stem + 2 * stem
    c = stem
    for i, w in enumerate(widths):
        for b in range(n):
            total += 9 * c * w + 2 * w + 9 * w * w + 2 * w
            if c != w or (b == 0 and i > 0):
                total += c * w + 2 * w  # 1x1 projection shortcut with batch norm
            c = w
    return total + c * classes + classes


@pytest.mark.parametrize("name,shape,expected", [
    ("mlp-800", (1, 28), 1_276_810),             # Hinton et al.'s 784-800-800-10 student
    ("mlp-800", (1, 28), _mlp_params([784, 800, 800, 10])),
    ("mlp-1200", (1, 28), _mlp_params([784, 1200, 1200, 10])),
    ("mlp-30", (1, 28), 23_860),
    ("cnn5", (1, 28), 9 * 32 + 64 + 9 * 32 * 64 + 128 + 9 * 64 * 128 + 256 + 128 * 3 * 3 * 256 + 256 + 2570),
    ("resnet20", (3, 32), 272_474),              # 0.27M (He et al. 2016), with projection shortcuts
    ("resnet20", (3, 32), _resnet_params(3, (16, 32, 64))),
    ("resnet56", (3, 32), _resnet_params(9, (16, 32, 64))),
    ("wrn-16-4", (3, 32), _resnet_params(2, (64, 128, 256))),
    ("wrn-40-2", (3, 32), _resnet_params(6, (32, 64, 128))),
])
def test_parameter_counts(name, shape, expected):
    assert parameter_count(build_model(name, *shape)) == expected


@pytest.mark.parametrize("name,depth", [("resnet8", 8), ("resnet20", 20), ("resnet56", 56)])
def test_resnet_depth_counts_3x3_convs_and_the_classifier(name, depth):
    model = build_model(name, 3, 32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth


@pytest.mark.parametrize("name,depth,k", [("wrn-16-2", 16, 2), ("wrn-16-4", 16, 4), ("wrn-40-2", 40, 2)])
def test_wide_resnet_depth_and_width(name, depth, k):
    model = build_model(name, 3, 32)
    assert len([m for m in model.modules() if isinstance(m, nn.Conv2d)]) == depth  # Zagoruyko & Komodakis count
    assert model.classifier.in_features == 64 * k


def test_mlp_teacher_has_dropout_in_training_only():
    model = build_model("mlp-1200")
    x = torch.randn(4, 1, 28, 28)
    assert not torch.equal(model.train()(x), model(x))
    assert torch.equal(model.eval()(x), model(x))


def test_mlp_teacher_drops_a_fifth_of_its_inputs_and_half_its_hidden_units():
    """Hinton et al. 2015 §3 / Srivastava et al. 2014: dropout 0.2 on pixels, 0.5 on hidden units."""
    model = build_model("mlp-1200").train()
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28) + 0.1  # no zero pixels, so every zero after dropout was dropped
    seen = []
    model.input_dropout.register_forward_hook(lambda m, i, o: seen.append((o == 0).float().mean().item()))
    model.hidden[0][2].register_forward_hook(lambda m, i, o: seen.append(((o == 0) & (i[0] != 0)).float().sum().item()
                                                                        / (i[0] != 0).float().sum().item()))
    model(x)
    assert seen[0] == pytest.approx(0.2, abs=0.01) and seen[1] == pytest.approx(0.5, abs=0.01)


def test_cnn5_dropout_is_cnn5_with_half_its_classifier_inputs_dropped():
    plain, dropped = build_model("cnn5", 3, 32), build_model("cnn5-dropout", 3, 32)
    assert parameter_count(plain) == parameter_count(dropped)
    torch.manual_seed(0)
    seen = []
    dropped.fc[3].register_forward_hook(lambda m, i, o: seen.append(((o == 0) & (i[0] != 0)).float().sum().item()
                                                                    / max((i[0] != 0).float().sum().item(), 1)))
    dropped.train()(torch.randn(64, 3, 32, 32))
    assert seen[0] == pytest.approx(0.5, abs=0.05)


def test_too_small_image_for_the_cnn_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        build_model("cnn5", 1, 4)


def test_unknown_model_lists_the_zoo():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*mlp-800.*resnet20"):
        build_model("vgg")


def test_alias_and_spec_round_trip():
    model = build_model("cnn", 3, 32, 100)
    assert model.spec == ModelSpec("cnn5", 3, 32, 100)
    again = build_from_spec(model.spec.to_dict())
    assert type(again) is type(model) and parameter_count(again) == parameter_count(model)


def test_model_summary():
    model = build_model("mlp-30").train()
    summary = model_summary(model)
    assert summary["params"] == 23_860
    assert summary["latency_ms"] > 0
    assert model.training  # measuring leaves the mode as it was


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cnn5_logits_alone_pool_before_the_relu_with_the_same_values_and_gradients(precision, layout):
    torch.manual_seed(0)
    net = build_model("cnn5").train().to(memory_format=layout)
    twin = copy.deepcopy(net)
    x = torch.randn(16, 1, 28, 28)
    x[:, :, :6] = 0.0  # flat rows: equal values in many pooling windows
    x = x.contiguous(memory_format=layout)
    seen = []
    net.blocks[0][2].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        fast = net(x)
        full, _ = twin(x, with_features=True)
    assert seen == [(16, 32, 14, 14)]  # the first ReLU saw the pooled map, not the 28x28 one
    assert torch.equal(fast, full)
    weights = torch.randn(fast.shape)
    (fast.float() * weights).sum().backward()
    (full.float() * weights).sum().backward()
    for (name, p), q in zip(net.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, a), b in zip(net.named_buffers(), twin.buffers()):  # batch norm's running statistics
        assert torch.equal(a, b), name
