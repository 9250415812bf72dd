"""The method registry of issue 3: every method builds, validates its knobs, refuses what
it cannot do with one clear error, and really trains a student on MNIST.

Real MNIST (from the ``mnist`` fixture) is average-pooled to 14x14 and cut to a few
hundred images so the whole file stays fast on two shared cores; the nets are the
zoo's smallest (cnn5-small, mlp-30, built for 14x14 inputs).
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from kdviz import data
from kdviz.generations import born_again, ensemble_accuracy
from kdviz.methods import REGISTRY, Combined, MethodError, Step, build_method
from kdviz.models import CNN5, ModelSpec, build_model
from kdviz.train import PhaseStarted, StepDone, TrainSettings, fit

torch.set_num_threads(2)

SIZE = 14  # MNIST pooled 2x2: a quarter of the pixels, the same digits
LR = 0.05  # constant, no warm-up: 0.1 makes KD's T-scaled gradients overshoot on a fresh CNN in a few steps
ISSUE_METHODS = {"baseline", "kd", "logits", "fitnet", "at", "fsp", "ft", "rkd", "ban", "recast", "adversarial"}
MAP_METHODS = ("at", "fsp", "ft", "recast")


def downscale(images: data.ImageData) -> data.ImageData:
    pooled = F.avg_pool2d(images.pixels.float(), 2).round().to(torch.uint8)
    return replace(images, pixels=pooled)


@pytest.fixture(scope="module")
def small(mnist):
    """(student transfer set of 256 images, 200 test images, 1,500 images to train teachers)."""
    n = len(mnist.train)  # 60,000 for MNIST, fewer for the made-up stand-in
    train = downscale(data.transfer_set(mnist.train, fraction=256 / n, seed=0))
    test = downscale(mnist.test.subset(torch.arange(200)))
    teacher_train = downscale(data.transfer_set(mnist.train, fraction=min(1.0, 1500 / n), seed=1))
    return train, test, teacher_train


def train_teacher(name: str, small) -> torch.nn.Module:
    _, test, teacher_train = small
    torch.manual_seed(0)
    teacher = build_model(name, image_size=SIZE)
    settings = TrainSettings(epochs=1, batch_size=64, lr=0.1, seed=0, device="cpu")
    for _ in fit(teacher, build_method("baseline", teacher), teacher_train, test, settings):
        pass
    return teacher.eval()


@pytest.fixture(scope="module")
def teachers(small):
    return {"cnn": train_teacher("cnn5-small", small), "mlp": train_teacher("mlp-30", small)}


def run(method: str, student: str, teacher, small, params=None, epochs=2, seed=0):
    """Train a fresh student; returns (method, student, events)."""
    train, test, _ = small
    torch.manual_seed(seed)
    net = build_model(student, image_size=SIZE)
    built = build_method(method, net, teacher, params or {})
    settings = TrainSettings(epochs=epochs, batch_size=32, lr=LR, schedule="constant", seed=seed, device="cpu")
    return built, net, list(fit(net, built, train, test, settings, teacher=teacher))


def history(events, phase: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for event in events:
        if isinstance(event, StepDone) and event.phase == phase:
            for name, value in event.losses.items():
                out.setdefault(name, []).append(value)
    return out


def assert_lowered(values: list[float], name: str, k: int = 4) -> None:
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    assert last < first, f"{name}: mean of the first {k} steps {first:.4g}, of the last {k} {last:.4g}"


# --------------------------------------------------------------------------- registry and knobs
def test_registry_lists_every_method_of_the_issue():
    assert ISSUE_METHODS <= set(REGISTRY)
    for name, cls in REGISTRY.items():
        assert cls.name == name
        assert cls.formula.strip(), f"{name} has no formula"
        assert cls.title.strip() and (cls.__doc__ or "").strip(), f"{name} needs a title and a docstring"


@pytest.mark.parametrize("name", sorted(ISSUE_METHODS))
def test_hyperparameters_have_defaults_in_range_and_refuse_values_outside(name):
    cls = REGISTRY[name]
    defaults = cls.resolve_params({})
    assert set(defaults) == {h.name for h in cls.hyperparams}
    for h in cls.hyperparams:
        assert h.help, f"{name}.{h.name} needs a one-line explanation"
        assert h.validate(h.default) == h.default
        if h.kind == "choice":
            with pytest.raises(MethodError, match=h.name):
                cls.resolve_params({h.name: "no-such-choice"})
            assert cls.resolve_params({h.name: str(h.choices[-1])})[h.name] == h.choices[-1]  # text from the CLI
        if h.high is not None:
            with pytest.raises(MethodError, match=h.name):
                cls.resolve_params({h.name: h.high + 1})
        if h.low is not None:
            with pytest.raises(MethodError, match=h.name):
                cls.resolve_params({h.name: h.low - 1})
    with pytest.raises(MethodError, match="no hyperparameter"):
        cls.resolve_params({"no_such_knob": 1})


# --------------------------------------------------------------------------- errors
def test_unknown_method_is_one_clear_error():
    student = build_model("mlp-30", image_size=SIZE)
    with pytest.raises(MethodError, match="unknown method 'distil'.*kd"):
        build_method("distil", student, student)
    with pytest.raises(MethodError, match="unknown method"):
        build_method("at+nope", student, student)


@pytest.mark.parametrize("name", MAP_METHODS)
def test_map_methods_refuse_mlps(name):
    mlp, cnn = build_model("mlp-30", image_size=SIZE), build_model("cnn5-small", image_size=SIZE)
    with pytest.raises(MethodError, match="convolutional feature maps.*MLP"):
        build_method(name, mlp, cnn)
    with pytest.raises(MethodError, match="convolutional feature maps.*MLP"):
        build_method(name, cnn, mlp)


@pytest.mark.parametrize("name", ("at", "fsp", "recast"))
def test_stage_count_mismatch_is_refused(name):
    three = build_model("cnn5-small", image_size=SIZE)
    two = CNN5(ModelSpec("cnn5-small", 1, SIZE), widths=(8, 16), fc=32)
    with pytest.raises(MethodError, match="3 stages and the teacher 2"):
        build_method(name, three, two)


def test_other_bad_requests_are_refused():
    cnn, mlp = build_model("cnn5-small", image_size=SIZE), build_model("mlp-30", image_size=SIZE)
    with pytest.raises(MethodError, match="needs a teacher"):
        build_method("kd", mlp, None)
    with pytest.raises(MethodError, match="stages 0..2, not 7"):
        build_method("fitnet", cnn, cnn, {"guided_stage": 7})
    with pytest.raises(MethodError, match="one kind"):
        build_method("fitnet", mlp, cnn)
    with pytest.raises(MethodError, match="distance_weight or angle_weight"):
        build_method("rkd", mlp, cnn, {"distance_weight": 0, "angle_weight": 0})
    with pytest.raises(MethodError, match=r"beta must be in \[0.0, 100000.0\]"):
        build_method("at+kd", cnn, cnn, {"beta": -1})


# --------------------------------------------------------------------------- every method trains
# (method, student, teacher, params, {phase: terms that must go down})
TRAINING_CASES = [
    ("baseline", "mlp-30", None, {}, {"train": ["ce"]}),
    ("kd", "mlp-30", "cnn", {}, {"train": ["kd"]}),
    ("logits", "mlp-30", "cnn", {}, {"train": ["logit_mse"]}),
    ("fitnet", "mlp-30", "mlp", {"stages": 1}, {"train": ["hint", "ce"]}),
    ("fitnet", "cnn5-small", "cnn", {"stages": 2, "hint_epochs": 2}, {"hint": ["hint"], "train": ["fitnet_kd"]}),
    # β = 1000 is scaled for 32x32 inputs; on 14x14 maps (3x3 at the last stage) the mean over
    # so few positions makes the term ~10x larger, and it would drown the labels in 16 steps
    ("at", "cnn5-small", "cnn", {"beta": 100}, {"train": ["at", "ce"]}),
    ("fsp", "cnn5-small", "cnn", {"stages": 1}, {"train": ["fsp", "ce"]}),
    ("fsp", "cnn5-small", "cnn", {"stages": 2, "fsp_epochs": 2}, {"fsp": ["fsp"], "train": ["ce"]}),
    ("ft", "cnn5-small", "cnn", {"paraphraser_epochs": 2}, {"paraphraser": ["reconstruction"], "train": ["factor", "ce"]}),
    ("rkd", "mlp-30", "cnn", {}, {"train": ["rkd_distance", "rkd_angle", "ce"]}),
    ("ban", "mlp-30", "mlp", {}, {"train": ["ban"]}),
    ("recast", "cnn5-small", "cnn", {"block_epochs": 2},
     {"recast block 1": ["recast1"], "recast block 2": ["recast2"], "recast block 3": ["recast3"], "train": ["recast_kd"]}),
    ("adversarial", "mlp-30", "cnn", {}, {"train": ["l1", "d_class", "ce"]}),
    ("adversarial", "mlp-30", "cnn", {"form": "gan", "conditional": False}, {"train": ["adversarial", "ce"]}),
]


@pytest.mark.parametrize("name,student,teacher,params,expected", TRAINING_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in TRAINING_CASES])
def test_method_trains_and_lowers_its_own_terms(name, student, teacher, params, expected, small, teachers):
    _, _, events = run(name, student, teachers.get(teacher), small, params)
    started = [e.phase for e in events if isinstance(e, PhaseStarted)]
    assert started == [*[p for p in expected if p != "train"], "train"]
    for phase, terms in expected.items():
        seen = history(events, phase)
        assert set(terms) <= set(seen), f"{phase}: logged {sorted(seen)}"
        for term in terms:
            assert all(v == v and abs(v) != float("inf") for v in seen[term]), f"{term} is not finite"
            assert_lowered(seen[term], f"{name}/{phase}/{term}")


def test_two_stage_fitnet_hint_phase_trains_only_up_to_the_guided_stage(small, teachers):
    torch.manual_seed(0)
    student = build_model("cnn5-small", image_size=SIZE)
    before = {k: v.clone() for k, v in student.named_parameters()}
    method = build_method("fitnet", student, teachers["cnn"], {"stages": 2, "guided_stage": 1, "hint_epochs": 1})
    train, test, _ = small
    settings = TrainSettings(epochs=0, batch_size=32, lr=LR, schedule="constant", device="cpu")
    list(fit(student, method, train, test, settings, teacher=teachers["cnn"]))  # the hint phase only
    # weights only: the whole student runs forward in train mode, so later batch-norm statistics move
    changed = {k for k, v in student.named_parameters() if not torch.equal(v, before[k])}
    assert any(k.startswith("blocks.0.") for k in changed) and any(k.startswith("blocks.1.") for k in changed)
    assert not any(k.startswith(("blocks.2.", "fc.", "classifier.")) for k in changed), sorted(changed)


def test_ft_paraphraser_phase_trains_no_part_of_the_student(small, teachers):
    torch.manual_seed(0)
    student = build_model("cnn5-small", image_size=SIZE)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    method = build_method("ft", student, teachers["cnn"], {"paraphraser_epochs": 1})
    paraphraser_before = [p.clone() for p in method.paraphraser.parameters()]
    train, test, _ = small
    settings = TrainSettings(epochs=0, batch_size=32, lr=LR, schedule="constant", device="cpu")
    list(fit(student, method, train, test, settings, teacher=teachers["cnn"]))
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())  # weights and BN statistics
    assert any(not torch.equal(p, q) for p, q in zip(method.paraphraser.parameters(), paraphraser_before))
    # frozen afterwards: the main phase trains the student and the translator only
    own = {id(p) for p in method.trainable_parameters()}
    assert own == {id(p) for p in method.translator.parameters()}


def test_recast_phases_train_one_student_block_each(small, teachers):
    torch.manual_seed(0)
    student = build_model("cnn5-small", image_size=SIZE)
    before = {k: v.clone() for k, v in student.named_parameters()}
    method = build_method("recast", student, teachers["cnn"], {"block_epochs": 1})
    train, test, _ = small
    settings = TrainSettings(epochs=0, batch_size=32, lr=LR, schedule="constant", device="cpu")
    list(fit(student, method, train, test, settings, teacher=teachers["cnn"]))
    changed = {k for k, v in student.named_parameters() if not torch.equal(v, before[k])}
    assert {k.split(".")[1] for k in changed if k.startswith("blocks.")} == {"0", "1", "2"}
    assert not any(k.startswith(("fc.", "classifier.")) for k in changed)  # the head waits for fine-tuning


# --------------------------------------------------------------------------- combinations
def feature_step(student, teacher, small) -> Step:
    train, _, _ = small
    x, y = train.images(torch.arange(32)), train.labels[:32]
    logits, features = student(x, with_features=True)
    with torch.no_grad():
        t_logits, t_features = teacher(x, with_features=True)
    return Step(x, y, logits, t_logits, features, t_features)


@pytest.mark.parametrize("combo", ["at+kd", "rkd+kd"])
def test_combination_sums_the_terms_of_its_parts(combo, small, teachers):
    torch.manual_seed(0)
    student, teacher = build_model("cnn5-small", image_size=SIZE), teachers["cnn"]
    method = build_method(combo, student, teacher, {"kd.alpha": 0.7})
    assert isinstance(method, Combined) and method.needs_features
    step = feature_step(student, teacher, small)
    first, second = (build_method(n, student, teacher, p) for n, p in zip(combo.split("+"), ({}, {"alpha": 0.7})))
    expected = {**first.losses(step), **second.losses(step)}
    got = method.losses(step)
    assert set(got) == set(expected) and len(got) == len(first.losses(step)) + 1
    for name in got:
        torch.testing.assert_close(got[name], expected[name])
    assert method.label_weight() == pytest.approx(0.3)  # KD's 1 − α wins over the other part's 1

    _, _, events = run(combo, "cnn5-small", teacher, small, {"kd.alpha": 0.7}, epochs=1)
    for event in (e for e in events if isinstance(e, StepDone)):
        parts = {k: v for k, v in event.losses.items() if k != "total"}
        assert set(parts) == {"ce", *expected}
        assert event.losses["total"] == pytest.approx(sum(parts.values()), rel=1e-5)


# --------------------------------------------------------------------------- adversarial
@pytest.mark.parametrize("params", [{}, {"form": "gan", "conditional": False}, {"form": "wgan"},
                                    {"form": "wgan", "lipschitz": "clip", "conditional": True},
                                    {"form": "gan", "inputs": "softmax", "conditional": True}])
def test_discriminator_learns_with_its_own_optimizer(params, small, teachers):
    torch.manual_seed(0)
    student = build_model("mlp-30", image_size=SIZE)
    method = build_method("adversarial", student, teachers["cnn"], params)
    d_before = [p.clone() for p in method.discriminator.parameters()]
    d_ids = {id(p) for p in method.discriminator.parameters()}
    assert not d_ids & {id(p) for p in method.trainable_parameters()}  # not in the student's optimizer
    train, test, _ = small
    settings = TrainSettings(epochs=1, batch_size=32, lr=LR, schedule="constant", device="cpu")
    events = list(fit(student, method, train, test, settings, teacher=teachers["cnn"]))
    logged = history(events, "train")
    assert len(logged["discriminator"]) == len(logged["adversarial"]) > 0
    # every weight matrix moves (a WGAN critic's last bias cancels out of D(t) − D(s), so biases may not)
    pairs = zip(method.discriminator.parameters(), d_before)
    assert all(not torch.equal(p, q) for p, q in pairs if p.dim() > 1)
    if params.get("lipschitz") == "clip":
        assert max(p.abs().max().item() for p in method.discriminator.parameters()) <= method.params["clip"] + 1e-7


# --------------------------------------------------------------------------- born-again networks
def test_ensemble_accuracy_by_hand():
    # two members, each right on one image only; their mean softmax is right on both
    labels = torch.tensor([0, 1])
    a = torch.tensor([[0.9, 0.1], [0.6, 0.4]]).log()
    b = torch.tensor([[0.4, 0.6], [0.1, 0.9]]).log()
    assert ensemble_accuracy([a], labels) == 0.5 and ensemble_accuracy([b], labels) == 0.5
    assert ensemble_accuracy([a, b], labels) == 1.0  # means [0.65, 0.35] and [0.35, 0.65]
    # averaging probabilities, not votes: one confident member outweighs a hesitant one
    c = torch.tensor([[0.45, 0.55], [0.45, 0.55]]).log()
    d = torch.tensor([[0.95, 0.05], [0.95, 0.05]]).log()
    assert ensemble_accuracy([c, d], labels) == 0.5


def test_born_again_trains_generations_and_evaluates_their_ensemble(tmp_path):
    from kdviz.evaluation import predict_logits
    from kdviz.experiment import RunConfig
    from kdviz.runs import load_checkpoint, load_run

    config = RunConfig(dataset="digits", student="mlp-30", method="ban",
                       train=TrainSettings(epochs=3, batch_size=64, lr=0.1, device="cpu"))
    records = born_again(config, generations=2, runs_dir=tmp_path)
    assert [r["generation"] for r in records] == [0, 1, 2]
    assert records[0]["method"] == "baseline" and records[0]["teacher"] is None
    for previous, record in zip(records, records[1:]):
        assert record["method"] == "ban" and record["teacher"] == previous["checkpoint"]
    assert [r["seed"] for r in records] == [0, 1, 2]
    test = data.load("digits").test
    logits = [predict_logits(load_checkpoint(r["checkpoint"]), test, device="cpu") for r in records]
    last = load_run(records[-1]["id"], tmp_path)
    assert last["ensemble_acc"] == pytest.approx(ensemble_accuracy(logits, test.labels))
    assert last["generation_accs"] == [r["test_acc"] for r in records]
    assert last["ensemble_acc"] > 0.5


def test_cli_runs_born_again_with_generations(tmp_path, capsys):
    import json

    from kdviz.cli import main

    code = main(["distill", "--method", "ban", "--generations", "1", "--dataset", "digits", "--student", "mlp-30",
                 "--epochs", "1", "--device", "cpu", "--runs-dir", str(tmp_path), "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["generation_accs"]) == 2 and 0 <= summary["ensemble_acc"] <= 1


def test_cli_reports_a_bad_method_in_one_line(tmp_path, capsys):
    from kdviz.cli import main
    from kdviz.runs import save_checkpoint

    teacher = save_checkpoint(build_model("mlp-30", image_size=8), tmp_path / "t.pt")
    code = main(["distill", "--method", "at", "--teacher", str(teacher), "--dataset", "digits", "--student", "mlp-30",
                 "--epochs", "1", "--runs-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "convolutional feature maps" in err


def test_xu_discriminator_is_conditional_and_learns_the_classes_from_the_teacher(small, teachers):
    """Xu et al. (2017): D sees logits beside the one-hot class and its class head learns the
    classes from the teacher's logits; the student's L1 term is the mean |s - t| of the logits."""
    torch.manual_seed(0)
    student = build_model("mlp-30", image_size=SIZE)
    method = build_method("adversarial", student, teachers["cnn"], {"d_lr": 1e-2})
    assert method.params["form"] == "xu" and method.params["conditional"]
    assert method.discriminator.body[0].in_features == 20 and method.discriminator.classify.out_features == 10
    train, test, _ = small
    x, y = train.images(torch.arange(64)), train.labels[:64]
    with torch.no_grad():
        t, s = teachers["cnn"](x), student(x)
    terms = method.losses(Step(x, y, s, t))
    assert set(terms) == {"adversarial", "l1", "d_class"}
    assert terms["l1"].item() == pytest.approx((s - t).abs().mean().item(), rel=1e-6)
    settings = TrainSettings(epochs=2, batch_size=32, lr=LR, schedule="constant", device="cpu")
    list(fit(student, method, train, test, settings, teacher=teachers["cnn"]))
    with torch.no_grad():
        t = teachers["cnn"](test.images())
        _, classes = method.discriminator(method.d_inputs(t, t.argmax(1)))
    # from the teacher's logits (and the class given beside them) the head names the class
    assert (classes.argmax(1) == t.argmax(1)).float().mean().item() > 0.9


def test_born_again_generations_learn_from_one_transfer_set(tmp_path):
    """With a fraction of the data, every generation gets the images generation 0 was given (a teacher's
    outputs on images it never saw would carry its test errors); only the initialisation changes."""
    from kdviz.experiment import Experiment, RunConfig
    from kdviz.sweep import run_key

    config = RunConfig(dataset="digits", student="mlp-30", method="ban", fraction=0.5,
                       train=TrainSettings(epochs=1, batch_size=64, lr=0.1, seed=3, device="cpu"))
    records = born_again(config, generations=2, runs_dir=tmp_path)
    assert [r["seed"] for r in records] == [3, 4, 5] and [r["config"]["data_seed"] for r in records] == [3, 3, 3]
    subsets = [Experiment(RunConfig.from_dict(r["config"]), runs_dir=tmp_path).train_data.pixels for r in records]
    assert all(torch.equal(subsets[0], s) for s in subsets[1:])
    other = data.transfer_set(data.load("digits").train, 0.5, seed=4)
    assert not torch.equal(subsets[0], other.pixels)  # the training seed alone would have picked other images
    # data_seed left at None keeps the keys of the runs made before it existed
    plain = RunConfig(dataset="digits", student="mlp-30", fraction=0.5, train=TrainSettings(seed=3))
    legacy = {k: v for k, v in plain.to_dict().items() if k != "data_seed"}
    assert run_key(plain) == run_key(legacy) != run_key(replace(plain, data_seed=4))
    assert run_key(replace(plain, data_seed=3)) != run_key(plain)  # said, not defaulted: another config
