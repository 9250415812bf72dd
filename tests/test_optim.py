"""kdviz.optim: torch's SGD and Adam without the torch._dynamo guards, with torch's numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from kdviz import optim
from kdviz.models import build_model

from conftest import REPO

SETTINGS = {"sgd": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4), "adam": dict(lr=0.01, weight_decay=5e-4)}
CLASSES = {"sgd": (optim.SGD, torch.optim.SGD), "adam": (optim.Adam, torch.optim.Adam)}


def _steps(net, opt, steps=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,), generator=generator)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("fused", [None, True])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_the_weights_are_torchs_bit_for_bit(name, fused):
    ours, theirs = CLASSES[name]
    torch.manual_seed(0)
    nets = [build_model("mlp-30") for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [cls(net.parameters(), fused=fused, **SETTINGS[name]) for cls, net in zip((ours, theirs), nets)]
    assert isinstance(opts[0], theirs)
    for net, opt in zip(nets, opts):
        _steps(net, opt)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)
    # the same state, in a state dict either class loads, and the runs go on identically
    mine, torchs = opts[0].state_dict(), opts[1].state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    assert all(torch.equal(mine["state"][k][s], torchs["state"][k][s]) for k in torchs["state"] for s in torchs["state"][k])
    swapped = [ours(nets[1].parameters(), fused=fused, **SETTINGS[name]), theirs(nets[0].parameters(), fused=fused, **SETTINGS[name])]
    swapped[0].load_state_dict(torchs)
    swapped[1].load_state_dict(mine)
    for net, opt in zip((nets[1], nets[0]), swapped):
        _steps(net, opt, seed=2)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)


def test_step_runs_without_grad_and_restores_the_mode():
    torch.manual_seed(0)
    net = build_model("mlp-30")
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)  # op by op: an in-place update of a leaf that requires
    net(torch.randn(4, 1, 28, 28)).sum().backward()          # grad fails unless the step turns grad off
    with torch.enable_grad():
        opt.step()
        assert torch.is_grad_enabled()
    with torch.no_grad():
        opt.step()
        assert not torch.is_grad_enabled()


def test_a_training_run_never_imports_torch_dynamo(tmp_path):
    """A whole run through the loop (optimizer, schedule, clip, state for resuming) in a fresh process."""
    script = """
import json, sys, torch
from kdviz.data import ImageData
from kdviz.methods import build_method
from kdviz.models import build_model
from kdviz.train import Finished, TrainSettings, fit
g = torch.Generator().manual_seed(0)
def split(name, n):
    return ImageData("made-up", name, torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), tuple("0123456789"), (0.5,), (0.3,))
train, test = split("train", 256), split("test", 64)
for optimizer in ("sgd", "adam"):
    net = build_model("mlp-30")
    events = list(fit(net, build_method("baseline", net), train, test,
                      TrainSettings(epochs=2, batch_size=64, optimizer=optimizer, device="cpu"), resume=sys.argv[1] + optimizer))
    assert isinstance(events[-1], Finished)
print(json.dumps("torch._dynamo" in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "state-")], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) is False
