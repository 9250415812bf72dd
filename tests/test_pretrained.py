"""The shipped teachers (pretrained/), their cards and probe sets, and the teacher-logits disk cache."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from kdviz import cli, data, pretrained, recipes, teacher_cache
from kdviz.evaluation import evaluate
from kdviz.losses import attention_map, entropy, soften
from kdviz.models import build_model
from kdviz.train import EpochDone, TrainSettings

from conftest import REAL_MNIST

SHIPPED = pretrained.names()


def test_teachers_are_shipped_within_the_size_budget():
    assert {"mnist-cnn", "mnist-mlp", "digits-cnn", "fashion-mnist-cnn"} <= set(SHIPPED)
    total = sum(p.stat().st_size for p in pretrained.pretrained_dir().iterdir() if p.is_file())
    assert total < 40 * 2**20  # the students' folder has its own budget (tests/test_shipped_students.py)


@pytest.mark.parametrize("name", SHIPPED)
def test_card_describes_its_files_and_recipe(name):
    info = pretrained.card(name)
    assert info["sha256"] == pretrained.file_sha256(pretrained.weights_path(name))
    assert info["probe_sha256"] == pretrained.file_sha256(pretrained.probe_path(name))
    assert info["command"] == f"kdviz pretrained make {name}"
    recipe = recipes.RECIPES[name]
    assert (info["dataset"], info["model"], info["epochs"], info["seed"]) == (
        recipe.dataset, recipe.model, recipe.settings.epochs, recipe.settings.seed)
    # a card written before a setting existed holds that setting at its default
    assert TrainSettings(**info["train_settings"]) == recipe.settings
    assert "measured by kdviz" in info["test_acc_note"]
    if info["dataset"] == "cifar10":
        assert "JPEG re-encoding" in info["data_note"]


def _test_split(name: str, request):
    """The teacher's real test split, or a skip when that data set is not on this machine."""
    dataset = pretrained.card(name)["dataset"]
    if dataset == "cifar10":
        return request.getfixturevalue("cifar10").test
    if dataset == "mnist" and not REAL_MNIST:
        pytest.skip("real MNIST not available (tests use made-up digits)")
    try:
        return data.load(dataset).test
    except data.DataNotFound as error:
        pytest.skip(str(error))


@pytest.fixture
def one_thread():
    """Evaluate as the cards were measured: one torch thread (on a busy 2-core machine it is
    also several times faster than two threads that keep waiting on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", SHIPPED)
def test_teacher_scores_its_card_accuracy_on_its_test_set(name, request, one_thread):
    test = _test_split(name, request)
    teacher = pretrained.load(name)
    info = pretrained.card(name)
    assert tuple(info["mean"]) == test.mean and tuple(info["std"]) == test.std
    if info["dataset"] != "cifar10" or name == "cifar10-resnet20":
        measured = evaluate(teacher, test, device="cpu", precision="fp32")["accuracy"]
    else:  # a whole CIFAR-10 pass costs CI 21-36 s a teacher (2-core EPYC; the WRN-16-4 a minute), so one
        # teacher runs the CIFAR-10 path end to end and the others' accuracy comes from their shipped test
        # logits, which tests/test_shipped_logits.py holds equal to the weights' own on 300 images spread over the split
        logits = teacher_cache.read_shipped(pretrained.test_logits_file(name), teacher, test)
        measured = (logits.argmax(1) == test.labels).float().mean().item()
    assert abs(100 * measured - 100 * info["test_acc"]) <= 0.1
    minimum = {"mnist-cnn": 0.994, "mnist-mlp": 0.991, "digits-cnn": 0.97, "fashion-mnist-cnn": 0.90,
               "cifar10-resnet20": 0.80, "cifar10-resnet20-full": 0.88, "cifar10-wrn-16-2-full": 0.88,
               "cifar10-wrn-16-4-gpu": 0.90}
    assert info["test_acc"] >= minimum.get(name, 0.0)


# --------------------------------------------------------------------------- tampering
@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A private copy of pretrained/ that KDVIZ_PRETRAINED points at."""
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained.pretrained_dir(), folder)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(folder))
    return folder


def _flip_byte(path, position=None):
    raw = bytearray(path.read_bytes())
    position = len(raw) // 2 if position is None else position
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_the_weights_is_refused_naming_the_file(shipped_copy):
    weights = shipped_copy / "digits-cnn.pt"
    pretrained.load("digits-cnn")  # the untouched copy loads
    _flip_byte(weights)
    with pytest.raises(pretrained.PretrainedError, match="digits-cnn.pt") as refused:
        pretrained.load("digits-cnn")
    assert "sha256" in str(refused.value)


def test_a_truncated_or_missing_file_is_refused(shipped_copy):
    weights = shipped_copy / "digits-cnn.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(pretrained.PretrainedError, match="digits-cnn.pt"):
        pretrained.load("digits-cnn")
    weights.unlink()
    with pytest.raises(pretrained.PretrainedError, match="digits-cnn.pt is missing"):
        pretrained.load("digits-cnn")


def test_a_changed_probe_set_is_refused(shipped_copy):
    _flip_byte(shipped_copy / "digits-cnn.probe.npz")
    with pytest.raises(pretrained.PretrainedError, match="digits-cnn.probe.npz"):
        pretrained.probe_set("digits-cnn")


def test_unknown_or_path_like_names_are_refused(shipped_copy):
    for name in ("no-such-teacher", "../pretrained/digits-cnn", ""):
        with pytest.raises(pretrained.PretrainedError, match="no pretrained teacher"):
            pretrained.load(name)


def test_cli_refuses_a_tampered_teacher_as_a_distillation_source(shipped_copy, capsys):
    _flip_byte(shipped_copy / "digits-cnn.pt")
    code = cli.main(["distill", "--teacher", "digits-cnn", "--dataset", "digits", "--epochs", "1", "--quiet"])
    assert code == 2
    assert "digits-cnn.pt" in capsys.readouterr().err


# --------------------------------------------------------------------------- probe sets, no data needed
@pytest.fixture
def no_data_at_all(tmp_path, monkeypatch):
    """No data directory, no decoded cache, and any data set load fails."""
    (tmp_path / "empty-data").mkdir()
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "empty-data"))
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "empty-cache"))

    def unavailable(name):
        raise data.DataNotFound(f"{name}: no data in this test")

    monkeypatch.setattr(data, "load", unavailable)


@pytest.mark.parametrize("name", SHIPPED)
def test_probe_set_drives_temperature_and_attention_without_any_data(name, no_data_at_all):
    probe = pretrained.probe_set(name)
    info = pretrained.card(name)
    assert probe.split == "probe" and probe.pixels.dtype == torch.uint8
    assert 150 <= len(probe) <= 500 and len(probe) == info["probe_size"]
    assert set(probe.labels.tolist()) == set(range(len(info["classes"])))  # every class is there

    teacher = pretrained.load(name)
    with torch.no_grad():
        logits, features = teacher(probe.images(), with_features=True)
    assert logits.shape == (len(probe), probe.num_classes)

    # temperature: rows are distributions, and heating flattens them (entropy rises with T)
    entropies = []
    for T in (1.0, 4.0, 20.0):
        p = soften(logits, T)
        assert torch.allclose(p.sum(-1), torch.ones(len(probe)), atol=1e-5)
        entropies.append(entropy(p).mean().item())
    assert entropies[0] < entropies[1] < entropies[2]

    # the probe really holds hesitant and clear cases, as its card says
    details = pretrained.probe_details(name)
    h = entropy(soften(logits, 1.0))
    ambiguous, clear = details["kind"] == 0, details["kind"] == 1
    assert h[ambiguous].mean() > 10 * h[clear].mean()
    assert (logits[clear].argmax(1) == probe.labels[clear]).all()

    # attention maps from every spatial stage of the teacher
    if teacher.stage_kind == "spatial":
        for stage in features.stages:
            q = attention_map(stage)
            assert q.shape == (len(probe), stage.shape[2] * stage.shape[3])
            assert torch.allclose(q.norm(dim=1), torch.ones(len(probe)), atol=1e-4)


# --------------------------------------------------------------------------- making a teacher
def test_make_writes_weights_probe_and_a_card_that_tells_the_truth(tmp_path, monkeypatch):
    tiny = recipes.Recipe("digits", "cnn5-small", TrainSettings(epochs=1, batch_size=64, lr=0.05, device="cpu"),
                             probe_per_class=9)
    monkeypatch.setitem(recipes.RECIPES, "tiny-digits", tiny)
    out = tmp_path / "made"
    threads = torch.get_num_threads()
    info = recipes.make("tiny-digits", out)
    assert torch.get_num_threads() == threads and info["torch_threads"] == tiny.threads
    assert sorted(p.name for p in out.iterdir()) == ["tiny-digits.json", "tiny-digits.probe.npz", "tiny-digits.pt"]
    assert json.loads((out / "tiny-digits.json").read_text()) == info
    assert info["command"] == "kdviz pretrained make tiny-digits"
    assert info["equivalent_command"].startswith(
        "OMP_NUM_THREADS=1 kdviz train-teacher --dataset digits --model cnn5-small --epochs 1")
    assert info["sha256"] == pretrained.file_sha256(out / "tiny-digits.pt")
    assert info["probe_size"] == 90

    monkeypatch.setenv("KDVIZ_PRETRAINED", str(out))
    assert pretrained.names() == ["tiny-digits"]
    teacher = pretrained.load("tiny-digits")
    test = data.load("digits").test
    assert evaluate(teacher, test, device="cpu")["accuracy"] == pytest.approx(info["test_acc"], abs=1e-6)
    probe = pretrained.probe_set("tiny-digits")
    index = pretrained.probe_details("tiny-digits")["test_index"]
    assert torch.equal(probe.pixels, test.pixels[index]) and torch.equal(probe.labels, test.labels[index])


def test_choose_probe_takes_the_most_and_least_certain_per_class():
    labels = torch.tensor([0] * 6 + [1] * 6)
    confidence = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 2)
    logits = torch.stack([confidence, torch.zeros(12)], 1)  # class-0 score; class 1 fixed at 0
    logits[6:] = logits[6:].flip(1)  # class-1 images get the score on class 1
    index, kind = recipes.choose_probe(logits, labels, per_class=3)
    picked = {(i, k) for i, k in zip(index.tolist(), kind.tolist())}
    assert (0, 0) in picked and (5, 1) in picked   # class 0: flattest is ambiguous, most peaked is clear
    assert (6, 0) in picked and (11, 1) in picked
    assert len(index) == 6 and len(set(index.tolist())) == 6


def test_cli_lists_shipped_teachers_with_accuracy(capsys):
    assert cli.main(["pretrained", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
        assert f"{100 * pretrained.card(name)['test_acc']:.2f}%" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["cifar10-wrn-16-4-gpu"].endswith(" s on NVIDIA H200)")  # its seconds are a GPU's
    assert lines["mnist-cnn"].endswith(" s)")


def test_cli_make_needs_a_known_name(capsys):
    assert cli.main(["pretrained", "make", "no-such"]) == 2
    assert "mnist-cnn" in capsys.readouterr().err


# --------------------------------------------------------------------------- teacher logits cache
@pytest.fixture
def digits_train():
    return data.load("digits").train


def _small_teacher(seed: int):
    torch.manual_seed(seed)
    return build_model("mlp-30", 1, 8, 10).eval()


def test_teacher_logits_are_computed_once_then_read_from_disk(digits_train, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    teacher = _small_teacher(0)
    first = teacher_cache.teacher_logits(teacher, digits_train, device="cpu")
    path = teacher_cache.cache_path(teacher, digits_train)
    assert path.is_file() and first.shape == (len(digits_train), 10)

    def must_not_run(*args, **kwargs):
        raise AssertionError("teacher logits recomputed although they are cached")

    monkeypatch.setattr(teacher_cache, "predict_logits", must_not_run)
    assert torch.equal(teacher_cache.teacher_logits(teacher, digits_train, device="cpu"), first)


def test_cache_key_changes_with_teacher_data_and_precision(digits_train, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    a, b = _small_teacher(0), _small_teacher(1)
    key = teacher_cache.cache_path(a, digits_train)
    assert teacher_cache.cache_path(b, digits_train) != key
    assert teacher_cache.cache_path(a, data.transfer_set(digits_train, fraction=0.5)) != key
    assert teacher_cache.cache_path(a, digits_train, precision="bf16") != key
    assert teacher_cache.cache_path(_small_teacher(0), digits_train) == key  # same weights, same key

    logits_a = teacher_cache.teacher_logits(a, digits_train, device="cpu")
    logits_b = teacher_cache.teacher_logits(b, digits_train, device="cpu")
    assert not torch.equal(logits_a, logits_b)  # b did not read a's file


def test_a_broken_cache_file_is_recomputed(digits_train, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    teacher = _small_teacher(0)
    path = teacher_cache.cache_path(teacher, digits_train)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a tensor file")
    logits = teacher_cache.teacher_logits(teacher, digits_train, device="cpu")
    assert torch.allclose(logits, teacher(digits_train.images()), atol=1e-5)
    assert torch.equal(torch.load(path, weights_only=True)["logits"], logits)


def test_a_cache_file_for_another_key_or_tampered_is_recomputed(digits_train, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    a, b = _small_teacher(0), _small_teacher(1)
    right = teacher_cache.teacher_logits(a, digits_train, device="cpu")
    path_a, path_b = teacher_cache.cache_path(a, digits_train), teacher_cache.cache_path(b, digits_train)
    path_b.write_bytes(path_a.read_bytes())  # a's file copied under b's key: the right shape, the wrong logits
    assert not torch.equal(teacher_cache.teacher_logits(b, digits_train, device="cpu"), right)
    entry = torch.load(path_a, weights_only=True)
    entry["logits"] = entry["logits"] + 1  # changed in place, key kept: the digest tells
    torch.save(entry, path_a)
    assert torch.equal(teacher_cache.teacher_logits(a, digits_train, device="cpu"), right)


def test_an_interrupted_make_goes_on_and_ships_the_same_weights(tmp_path, monkeypatch):
    """``make`` keeps its state after every epoch: killed after epoch 1 and run again, it trains
    epoch 2 only and writes the very file an uninterrupted make writes."""
    tiny = recipes.Recipe("digits", "mlp-30", TrainSettings(epochs=2, batch_size=64, lr=0.05, device="cpu",
                                                              jitter=1), probe_per_class=3)
    monkeypatch.setitem(recipes.RECIPES, "tiny-digits", tiny)
    straight = recipes.make("tiny-digits", tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_first_epoch(event):
        if isinstance(event, EpochDone):
            raise Killed

    with pytest.raises(Killed):
        recipes.make("tiny-digits", tmp_path / "b", on_event=kill_after_first_epoch)
    assert recipes.resume_path("tiny-digits", tmp_path / "b").is_file()
    seen = []
    again = recipes.make("tiny-digits", tmp_path / "b", on_event=seen.append)
    assert [e.epoch for e in seen if isinstance(e, EpochDone)] == [2]
    assert again["sha256"] == straight["sha256"] and again["history_test_acc"] == straight["history_test_acc"]
    assert not recipes.resume_path("tiny-digits", tmp_path / "b").exists()
    assert "--jitter 1" in again["equivalent_command"]
