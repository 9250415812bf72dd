"""The runs the presets of :mod:`kdviz.presets` train, as RunConfigs (:class:`kdviz.experiment.RunConfig`):
the classroom demo's (:func:`demo_configs`), the two students of an "inside the networks" page
(:func:`pair_configs`) and the Compare page's sweep (:func:`method_sweep`).
"""
from __future__ import annotations

from dataclasses import replace

from kdviz.experiment import RunConfig
from kdviz.methods import method_class
from kdviz.presets import DEMO, PAGE_METHODS, Preset
from kdviz.train import TrainSettings


def demo_configs(teacher: str = DEMO["teacher"], seeds: tuple[int, ...] = (DEMO["seed"],),
                 epochs: int = DEMO["epochs"], precision: str = DEMO["precision"]) -> list[RunConfig]:
    """The demo's runs: per seed, the student on labels only, then with :data:`DEMO`'s method."""
    return [RunConfig(dataset=DEMO["dataset"], student=DEMO["student"], method=method, params=params,
                      teacher=teacher if method != "baseline" else None,
                      train=TrainSettings(epochs=epochs, batch_size=DEMO["batch_size"], lr=DEMO["lr"], seed=seed,
                                          precision=precision))
            for seed in seeds
            for method, params in (("baseline", {}), (DEMO["method"], dict(DEMO["params"])))]


def pair_configs(preset: Preset, method: str, params: dict | None = None, seed: int = 1, precision: str = "auto"):
    """The two RunConfigs a page compares: a baseline student (labels only, no teacher) and a student
    trained with ``method`` from the preset's teacher, on one budget: SGD + one-cycle to lr 0.1,
    batch 128, bf16 autocast where the hardware runs it natively (``precision="auto"``), else fp32.

    The seed is 1, not 0: the shipped teachers are trained with seed 0, and a student of the
    teacher's own architecture (FSP) would otherwise start from the teacher's initial weights."""
    b = preset.budget_for(method)
    settings = TrainSettings(epochs=b.epochs, batch_size=128, lr=0.1, seed=seed, precision=precision)
    params = {**PAGE_METHODS.get(method, {}), **(params or {})}
    baseline = RunConfig(preset.dataset, b.student, "baseline", train=replace(settings), fraction=b.fraction)
    distilled = RunConfig(preset.dataset, b.student, method, params=params, teacher=preset.teacher,
                          train=replace(settings), fraction=b.fraction)
    return baseline, distilled


def method_sweep(dataset: str, student: str, methods: list[str], seeds: int, epochs: int, precision: str = "auto",
                 teacher: str | None = None, alphas: tuple[float, ...] = (), temperatures: tuple[float, ...] = ()
                 ) -> list[RunConfig]:
    """The Compare page's sweep: every method with its default hyperparameters over seeds 0..``seeds``-1
    (the teacher given only to methods that need one), then one KD run (seed 0) for every α × T."""
    configs = [RunConfig(dataset=dataset, student=student, method=m, params={},
                         teacher=teacher if method_class(m).needs_teacher else None,
                         train=TrainSettings(epochs=epochs, seed=s, precision=precision))
               for m in methods for s in range(seeds)]
    configs += [RunConfig(dataset=dataset, student=student, method="kd", params={"alpha": a, "T": t}, teacher=teacher,
                          train=TrainSettings(epochs=epochs, seed=0, precision=precision))
                for a in alphas for t in temperatures]
    return configs
