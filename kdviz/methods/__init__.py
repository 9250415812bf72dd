"""The method registry: every distillation method by name, built the same way.

``build_method("kd", student, teacher, {"T": 4})`` returns a :class:`Method`;
``"at+kd"`` builds a :class:`Combined` of both. Hyperparameters of a combination
may be given as ``"at.beta"`` (one part) or ``"beta"`` (every part that has it).
"""
# ruff: noqa: I001 - importing a method registers it: the order below is the order the app lists them
from __future__ import annotations

from kdviz.methods.base import REGISTRY, Combined, Hyperparam, Method, MethodError, Phase, Step, register
from kdviz.methods import kd as _kd  # noqa: F401  (registers baseline, kd)
# each import registers one method, in the order the app lists them
from kdviz.methods import logits as _logits  # noqa: F401
from kdviz.methods import fitnet as _fitnet  # noqa: F401
from kdviz.methods import at as _at  # noqa: F401
from kdviz.methods import fsp as _fsp  # noqa: F401
from kdviz.methods import ft as _ft  # noqa: F401
from kdviz.methods import rkd as _rkd  # noqa: F401
from kdviz.methods import ban as _ban  # noqa: F401
from kdviz.methods import recast as _recast  # noqa: F401
from kdviz.methods import adversarial as _adversarial  # noqa: F401

__all__ = ["REGISTRY", "Combined", "Hyperparam", "Method", "MethodError", "Phase", "Step", "register",
           "build_method", "check_method", "method_names", "method_class", "method_parts"]


def method_names() -> list[str]:
    return list(REGISTRY)


def method_class(name: str) -> type[Method]:
    if name not in REGISTRY:
        raise MethodError(f"unknown method {name!r}; choose one of: {', '.join(REGISTRY)} (or a combination like at+kd)")
    return REGISTRY[name]


def method_parts(name: str) -> list[str]:
    """The registered methods a name combines: ``"at+kd"`` -> ``["at", "kd"]``. Each part must be
    a method's exact name, once (a name like ``"kd+"`` or ``"kd\\n"`` is refused, not read as ``kd``:
    it would end up in the record and the run folder's name)."""
    if not isinstance(name, str):
        raise MethodError(f"method must be a name, got {name!r}")
    names = name.split("+")
    if not name or not any(names):
        raise MethodError("empty method name")
    for n in names:
        if not n:
            raise MethodError(f"method {name!r} has an empty part; join method names with + (e.g. at+kd)")
        method_class(n)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MethodError(f"method {name!r} names {', '.join(repeated)} more than once")
    return names


def split_params(names: list[str], params: dict) -> list[dict]:
    """Route ``{"at.beta": 1, "T": 4}`` to the parts of a combination."""
    classes = [method_class(n) for n in names]
    routed: list[dict] = [{} for _ in names]
    for key, value in params.items():
        part, _, short = key.rpartition(".")
        targets = [i for i, n in enumerate(names) if (n == part if part else any(h.name == short for h in classes[i].hyperparams))]
        if not targets:
            raise MethodError(f"no part of {'+'.join(names)!r} has a hyperparameter {key!r}")
        for i in targets:
            routed[i][short] = value
    return routed


def build_method(name: str, student, teacher=None, params: dict | None = None) -> Method:
    names = method_parts(name)
    routed = split_params(names, params or {})
    parts = [method_class(n)(student, teacher, **p) for n, p in zip(names, routed)]
    return parts[0] if len(parts) == 1 else Combined(parts)


def check_method(name: str, params: dict | None = None) -> bool:
    """Check a method name and its hyperparameters without building anything (so bad input
    is refused before data or a teacher is loaded); returns whether it needs a teacher."""
    names = method_parts(name)
    for n, p in zip(names, split_params(names, params or {})):
        method_class(n).resolve_params(p)
    return any(method_class(n).needs_teacher for n in names)
