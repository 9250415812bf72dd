"""torch's SGD and Adam without their ``torch.compile`` guards, which cost 1.5-2 s of CPU per process.

``torch.optim`` wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._disable_dynamo``, and every ``step`` in a helper that calls
``torch._dynamo.graph_break()``; both import ``torch._dynamo`` on first use: 1.1-1.3 s of CPU on
a 2-core Xeon (KVM, AVX-512 BF16, no AMX), and about 0.5 s more at interpreter exit, in every
process that builds an optimizer. A third of a warm ``kdviz distill`` run's start-up was that
import (benchmarks/speed.py, ``startup``). The guards only matter while ``torch.compile`` traces
(kdviz never compiles: it gave no gain on CPU, see DESIGN.md); in eager mode they do nothing. The
classes here call the functions the guards wrap directly, with the same grad mode around ``step``
as torch's helper: the same arithmetic (tests/test_optim.py checks weights bit for bit against
torch's classes), the same state dicts, and ``isinstance(opt, torch.optim.SGD)`` still holds.
"""
from __future__ import annotations

import inspect

import torch

_BASE = torch.optim.Optimizer


class _WithoutDynamo:
    """Mixin (first base) that replaces the guarded methods of a ``torch.optim`` class."""

    # inspect.unwrap follows the __wrapped__ chain functools.wraps leaves (torch's guard, and the
    # profiler hook torch adds to a class's step once the class has been instantiated)
    add_param_group = inspect.unwrap(_BASE.add_param_group)
    zero_grad = inspect.unwrap(_BASE.zero_grad)
    state_dict = inspect.unwrap(_BASE.state_dict)
    load_state_dict = inspect.unwrap(_BASE.load_state_dict)
    _eager_step = None  # set per class: the unwrapped step of the torch class

    def step(self, closure=None):
        # what torch.optim.optimizer._use_grad_for_differentiable does, without its graph breaks
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return type(self)._eager_step(self, closure)
        finally:
            torch.set_grad_enabled(previous)


class SGD(_WithoutDynamo, torch.optim.SGD):
    """:class:`torch.optim.SGD` that never imports ``torch._dynamo``."""

    _eager_step = inspect.unwrap(torch.optim.SGD.step)


class Adam(_WithoutDynamo, torch.optim.Adam):
    """:class:`torch.optim.Adam` that never imports ``torch._dynamo``."""

    _eager_step = inspect.unwrap(torch.optim.Adam.step)
