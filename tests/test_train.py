"""kdviz.train: the one loop learns, is deterministic, stops, caches the teacher, streams events in order."""
from __future__ import annotations

import inspect
import threading
import types
from dataclasses import asdict

import pytest
import torch

from kdviz import data
from kdviz.evaluation import predict_logits
from kdviz.experiment import Experiment, RunConfig
from kdviz.methods import build_method
from kdviz.methods.kd import HintonKD
from kdviz.models import MLP, ModelSpec, build_model
from kdviz.train import EpochDone, Finished, StepDone, TrainSettings, fit

from conftest import REAL_MNIST

TIMINGS = {"images_per_s", "elapsed"}


@pytest.fixture(scope="module")
def small(mnist):
    """A tenth of MNIST (all of the made-up stand-in) to learn from, 2,000 test images to score on."""
    train = data.transfer_set(mnist.train, fraction=0.1 if REAL_MNIST else 1.0, seed=0)
    return train, mnist.test.subset(torch.arange(min(2000, len(mnist.test))))


@pytest.fixture(scope="module")
def teacher(small):
    torch.manual_seed(0)
    net = build_model("mlp-800")
    events = list(fit(net, build_method("baseline", net), *small, TrainSettings(epochs=1, device="cpu")))
    assert events[-1].test_acc > 0.8
    return net.eval()


def student(name="mlp-30", seed=0):
    torch.manual_seed(seed)
    return build_model(name)


def run(net, method, train, test, teacher=None, **settings):
    settings = TrainSettings(**{"epochs": 1, "device": "cpu", "batch_size": 128, **settings})
    return list(fit(net, method, train, test, settings, teacher))


def test_a_short_run_learns(small):
    net = student("mlp-30")
    events = run(net, build_method("baseline", net), *small, epochs=2)
    done = events[-1]
    assert isinstance(done, Finished) and not done.stopped
    assert done.test_acc > 0.85  # chance is 0.10
    assert done.history[1]["losses"]["ce"] < done.history[0]["losses"]["ce"]
    assert sum(sum(row) for row in done.confusion) == len(small[1])
    assert sum(done.confusion[i][i] for i in range(10)) == round(done.test_acc * len(small[1]))


def _without_timings(events):
    out = []
    for e in events:
        d = asdict(e)
        for key in TIMINGS:
            d.pop(key, None)
        for h in d.get("history", []):
            for key in TIMINGS:
                h.pop(key)
        out.append((type(e).__name__, d))
    return out


def test_one_seed_gives_identical_runs(small):
    train, test = data.transfer_set(small[0], fraction=0.2, seed=0), small[1].subset(torch.arange(300))
    runs = []
    for seed in (0, 0, 1):
        net = student("cnn5-small", seed)
        runs.append((_without_timings(run(net, build_method("baseline", net), train, test, seed=seed)), net.state_dict()))
    (first, w1), (second, w2), (other, _) = runs
    assert first == second
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert first != other


def test_reading_each_step_one_step_late_changes_nothing_but_when_it_is_read(small, monkeypatch):
    """On a GPU a step's logged values are read after the next step is queued (kdviz.train.read_lag):
    forced here on the CPU, the same events in the same order, the same weights."""
    import kdviz.train as loop

    train, test = data.transfer_set(small[0], fraction=0.2, seed=0), small[1].subset(torch.arange(300))
    runs = []
    for lag in (0, 1):
        monkeypatch.setattr(loop, "read_lag", lambda device, lag=lag: lag)
        net = student("cnn5-small")
        runs.append((_without_timings(run(net, build_method("baseline", net), train, test, epochs=2)), net.state_dict()))
    (now, w_now), (late, w_late) = runs
    assert now == late and sum(name == "StepDone" for name, _ in late) > 4
    assert all(torch.equal(w_now[k], w_late[k]) for k in w_now)


@pytest.mark.parametrize("lag", [0, 1])
def test_stopping_between_steps(small, monkeypatch, lag):
    """Stopped after the event of step 3: on the CPU no step follows; with the values read one step late
    (a GPU, kdviz.train.read_lag; forced here) step 4 was already taken, and it is reported too."""
    import kdviz.train as loop

    monkeypatch.setattr(loop, "read_lag", lambda device: lag)
    stop = threading.Event()
    net = student()
    events = []
    for event in fit(net, build_method("baseline", net), *small, TrainSettings(epochs=3, device="cpu"), stop=stop):
        events.append(event)
        if isinstance(event, StepDone) and event.step == 3:
            stop.set()
    steps = [e for e in events if isinstance(e, StepDone)]
    assert [e.step for e in steps] == [1, 2, 3, 4][:3 + lag] and not any(isinstance(e, EpochDone) for e in events)
    done = events[-1]
    assert isinstance(done, Finished) and done.stopped and done.history == []
    assert 0 <= done.test_acc <= 1


class LiveTeacherKD(HintonKD):
    """Hinton KD that asks for features, so the loop must run the teacher at every step."""

    needs_features = True


def _count_calls(net):
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_cached_teacher_logits_give_the_losses_of_a_live_teacher(small, teacher):
    train = data.transfer_set(small[0], fraction=0.3, seed=0)
    test = small[1].subset(torch.arange(200))
    calls = _count_calls(teacher)
    cached_student, live_student = student(), student()
    cached = run(cached_student, HintonKD(cached_student, teacher, T=4, alpha=0.7), train, test, teacher)
    cached_calls = len(calls)
    live = run(live_student, LiveTeacherKD(live_student, teacher, T=4, alpha=0.7), train, test, teacher)
    steps = -(-len(train) // 128)
    batch = inspect.signature(predict_logits).parameters["batch_size"].default
    assert cached_calls == -(-len(train) // batch)  # one pass over the transfer set, before training
    assert len(calls) - cached_calls == steps      # the live teacher runs at every step
    cached_losses = [e.losses for e in cached if isinstance(e, StepDone)]
    live_losses = [e.losses for e in live if isinstance(e, StepDone)]
    assert len(cached_losses) == steps and cached_losses[0].keys() == {"ce", "kd", "total"}
    for a, b in zip(cached_losses, live_losses):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_given_teacher_logits_skip_the_teacher(small, teacher):
    train, test = data.transfer_set(small[0], fraction=0.1, seed=0), small[1].subset(torch.arange(200))
    logits = predict_logits(teacher, train, device="cpu")
    calls = _count_calls(teacher)
    net = student()
    settings = TrainSettings(epochs=3, device="cpu")
    events = list(fit(net, build_method("kd", net, teacher), train, test, settings, teacher, teacher_logits=logits))
    assert calls == [] and events[-1].test_acc > 0.5


def test_hidden_labels_leave_no_label_term(small, teacher):
    shown = small[0]
    hidden = data.transfer_set(small[0], hide_labels=True)
    test = small[1].subset(torch.arange(200))
    for train, keys in ((shown, {"ce", "kd", "total"}), (hidden, {"kd", "total"})):
        net = student()
        events = run(net, build_method("kd", net, teacher, {"alpha": 0.5}), train, test, teacher)
        step = next(e for e in events if isinstance(e, StepDone))
        assert step.losses.keys() == keys
        assert step.losses["total"] == pytest.approx(sum(v for k, v in step.losses.items() if k != "total"), rel=1e-5)
    assert events[-1].test_acc > 0.6  # learnt from the teacher alone
    net = student()
    with pytest.raises(ValueError, match="no loss term"):
        run(net, build_method("baseline", net), hidden, test)


def test_event_stream_order(small):
    train, test = data.transfer_set(small[0], fraction=0.05, seed=0), small[1].subset(torch.arange(200))
    net = student()
    events = run(net, build_method("baseline", net), train, test, epochs=2, batch_size=64)
    steps_per_epoch = -(-len(train) // 64)
    expected = [("PhaseStarted", None, None)]
    for epoch in (1, 2):
        expected += [("StepDone", epoch, i) for i in range(1, steps_per_epoch + 1)] + [("EpochDone", epoch, None)]
    expected.append(("Finished", None, None))
    got = [(type(e).__name__, getattr(e, "epoch", None), getattr(e, "step", None)) for e in events]
    assert got == expected
    start = events[0]
    assert (start.phase, start.epochs, start.steps_per_epoch) == ("train", 2, steps_per_epoch)
    epochs = [e for e in events if isinstance(e, EpochDone)]
    assert events[-1].history == [asdict(e) for e in epochs]
    assert all(0 <= e.train_acc <= 1 and 0 <= e.test_acc <= 1 and e.losses.keys() == {"ce", "total"} for e in epochs)
    elapsed = [e.elapsed for e in events if hasattr(e, "elapsed")]
    assert elapsed == sorted(elapsed)


@pytest.mark.parametrize("clip", [0.0, 0.05, 1e3])
def test_gradient_clip_caps_the_first_update(small, clip):
    """First SGD step from rest, no weight decay: Nesterov moves the weights by lr·(1 + 0.9)·g,
    where g is rescaled to norm ``clip`` when its norm is larger (untouched when clip is 0 or large)."""
    net = student()
    one_batch = small[0].subset(torch.arange(128))
    before = [p.detach().clone() for p in net.parameters()]
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(one_batch.images()), one_batch.labels).backward()
    raw = torch.cat([p.grad.flatten() for p in net.parameters()]).norm().item()
    run(net, build_method("baseline", net), one_batch, small[1].subset(torch.arange(64)), lr=0.5, weight_decay=0.0,
        schedule="constant", grad_clip=clip)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before)]).norm().item()
    assert raw > 0.05
    expected = min(raw, clip) if clip else raw
    assert moved == pytest.approx(0.5 * 1.9 * expected, rel=1e-3)


@pytest.mark.parametrize("bad", [{"epochs": -1}, {"batch_size": 0}, {"lr": 0}, {"optimizer": "rmsprop"},
                                 {"schedule": "step"}, {"precision": "fp16"}, {"grad_clip": -1}])
def test_bad_settings_are_refused(small, bad):
    net = student()
    with pytest.raises(ValueError):
        run(net, build_method("baseline", net), small[0].subset(torch.arange(64)), small[1].subset(torch.arange(64)), **bad)


def test_experiment_records_are_identical_for_one_seed(tmp_path):
    """Through the experiment layer, as the CLI and app use it: teacher run, then two distillations."""
    teacher_cfg = RunConfig("digits", "mlp-800", train=TrainSettings(epochs=2, device="cpu"))
    teacher_run = Experiment(teacher_cfg, runs_dir=tmp_path).run()
    records = []
    for seed in (3, 3):
        cfg = RunConfig("digits", "cnn5-small", "kd", {"T": 4}, teacher=teacher_run["id"],
                        train=TrainSettings(epochs=2, device="cpu", seed=seed))
        records.append(Experiment(cfg, runs_dir=tmp_path).run())
    timing = {"id", "created", "wall_time_s", "train_time_s", "prepare_time_s", "latency_ms", "checkpoint"}
    a, b = ({k: v for k, v in r.items() if k not in timing} for r in records)
    for r in (a, b):
        for h in r["history"]:
            h.pop("images_per_s"), h.pop("elapsed")
    assert a == b
    assert a["test_acc"] > 0.5 and a["teacher"] == f"run:{teacher_run['id']}"


@pytest.mark.parametrize("flags, speedup, expected", [
    ({"avx2"}, None, "fp32"),                          # bf16 emulated: never measured, never taken
    ({"avx2", "avx512_bf16"}, 0.55, "fp32"),           # AVX-512 BF16 measured slower (a Xeon VM hiding AMX)
    ({"avx2", "avx512_bf16"}, 2.3, "bf16"),            # ... and measured faster (an AMD EPYC, Zen 4)
    ({"amx_bf16", "amx_tile", "avx512_bf16"}, None, "bf16"),  # AMX: taken without measuring
    (set(), None, "fp32")])
def test_auto_precision_is_bf16_only_where_it_is_faster(monkeypatch, flags, speedup, expected):
    from kdviz import evaluation

    def measured() -> float:
        assert speedup is not None, "the bf16 matmul was measured on a CPU whose flags already decide"
        return speedup

    monkeypatch.setattr(evaluation, "_cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(evaluation, "bf16_matmul_speedup", measured)
    assert evaluation.resolve_precision("auto", "cpu") == expected
    assert evaluation.resolve_precision("fp32", "cpu") == "fp32"
    assert evaluation.resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: honoured
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluation.resolve_precision("fp16", "cpu")


def test_the_bf16_probe_times_both_precisions_of_a_real_matmul(monkeypatch):
    """The probe's ratio is the best fp32 time over the best bf16 time of a real matmul. The clock
    it reads is replaced by one that each matmul moves on by a set cost per dtype (and the first,
    untimed call of each by far more), so the ratio is exact and no busy machine can blur it."""
    from kdviz import evaluation

    cost = {torch.float32: 6.0, torch.bfloat16: 2.0}
    clock = {"now": 0.0, "calls": {}}
    matmul = torch.Tensor.__matmul__

    def timed_matmul(x, y):
        seen = clock["calls"].setdefault(x.dtype, 0)
        clock["calls"][x.dtype] = seen + 1
        clock["now"] += cost[x.dtype] * (100 if seen == 0 else 1 + seen % 2)  # a slow warm-up, then jitter
        return matmul(x, y)

    monkeypatch.setattr(torch.Tensor, "__matmul__", timed_matmul)
    monkeypatch.setattr(evaluation, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    assert evaluation.bf16_matmul_speedup.__wrapped__(repeats=3) == pytest.approx(3.0)
    assert clock["calls"] == {torch.float32: 4, torch.bfloat16: 4}  # one warm-up and 3 timings each

    cost[torch.bfloat16] = 12.0  # bf16 now twice as slow as fp32
    assert evaluation.bf16_matmul_speedup.__wrapped__(repeats=3) == pytest.approx(0.5)


def test_records_say_which_precision_ran(tmp_path, monkeypatch):
    from kdviz import evaluation

    monkeypatch.setattr(evaluation, "_cpu_flags", lambda: frozenset())
    cfg = RunConfig("digits", "mlp-30", train=TrainSettings(epochs=1, device="cpu", precision="auto"), save_model=False)
    record = Experiment(cfg, runs_dir=tmp_path).run()
    assert record["config"]["train"]["precision"] == "auto" and record["precision"] == "fp32"


# --------------------------------------------------------------------------- the hot path
def test_conv_nets_train_in_channels_last_with_the_numbers_of_nchw(small, monkeypatch):
    """On the CPU a conv student (and a live teacher) run in channels-last layout; the losses and
    accuracy are those of the usual NCHW layout up to rounding, and an MLP is left as it is."""
    from kdviz import evaluation

    train, test = data.transfer_set(small[0], fraction=0.1, seed=0), small[1].subset(torch.arange(300))
    conv_teacher = build_model("cnn5-small").eval()

    def train_once():
        net = student("cnn5-small", 0)
        events = run(net, LiveTeacherKD(net, conv_teacher), train, test, conv_teacher)
        return net, [e.losses["total"] for e in events if isinstance(e, StepDone)], events[-1].test_acc

    fast, fast_losses, fast_acc = train_once()
    assert fast.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not fast.blocks[1][0].weight.is_contiguous()
    assert conv_teacher.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(evaluation, "prefers_channels_last", lambda *args, **kwargs: False)
    conv_teacher.to(memory_format=torch.contiguous_format)
    plain, plain_losses, plain_acc = train_once()
    assert plain.blocks[1][0].weight.is_contiguous()
    assert len(fast_losses) == len(plain_losses) > 3
    assert torch.allclose(torch.tensor(fast_losses), torch.tensor(plain_losses), rtol=2e-3)
    assert abs(fast_acc - plain_acc) <= 0.02
    mlp = student("mlp-30")
    assert not evaluation.fast_layout(mlp, "cpu") and mlp.hidden[0][0].weight.is_contiguous()


def test_predictions_do_not_depend_on_the_layout(small):
    net = student("cnn5-small").eval()
    images = small[1].subset(torch.arange(200))
    nchw = net(images.images()).detach()
    logits = predict_logits(net, images, device="cpu")  # switches the conv net to channels-last
    assert net.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(logits, nchw, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_optimizer_steps_like_the_plain_one(optimizer):
    """make_optimizer's fused kernels give the numbers of torch's op-by-op optimizer."""
    from kdviz.train import make_optimizer

    torch.manual_seed(0)
    nets = [build_model("mlp-30") for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    settings = TrainSettings(optimizer=optimizer)
    fused = make_optimizer(nets[0].parameters(), settings, 0.05)
    plain = (torch.optim.Adam(nets[1].parameters(), lr=0.05, weight_decay=5e-4) if optimizer == "adam" else
             torch.optim.SGD(nets[1].parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))
    assert fused.defaults["fused"] and not plain.defaults.get("fused")
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    for _ in range(5):
        for net, opt in zip(nets, (fused, plain)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_finished_run_is_scored_once_per_epoch(small, monkeypatch):
    """The end-of-run scores are the last epoch's (same weights): no second pass over the test set;
    a stopped run is scored again (its weights moved since)."""
    import kdviz.train as train_module

    calls = []
    real = train_module.evaluate
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    train, test = data.transfer_set(small[0], fraction=0.2, seed=0), small[1].subset(torch.arange(300))
    net = student()
    events = run(net, build_method("baseline", net), train, test, epochs=2)
    done = events[-1]
    assert len(calls) == 2 and done.test_acc == done.history[-1]["test_acc"]
    assert done.confusion == real(net, test, "cpu")["confusion"]
    calls.clear()
    stop = threading.Event()
    for event in fit(net, build_method("baseline", net), train, test, TrainSettings(epochs=2, device="cpu"), stop=stop):
        if isinstance(event, StepDone) and event.epoch == 2 and event.step == 2:
            stop.set()
    assert len(calls) == 2 and event.stopped  # epoch 1, then the final scoring of the stopped run


# --------------------------------------------------------------------------- resuming
def _run_with_resume(net, method, train, test, path, stop_after_epoch=None, **settings):
    """Run, optionally stopping at the first step after epoch ``stop_after_epoch`` ended."""
    stop = threading.Event()
    events = []
    settings = TrainSettings(**{"epochs": 3, "device": "cpu", "batch_size": 64, **settings})
    for event in fit(net, method, train, test, settings, stop=stop, resume=path):
        events.append(event)
        if isinstance(event, EpochDone) and event.epoch == stop_after_epoch:
            stop.set()
    return events


def test_a_resumed_run_ends_as_the_uninterrupted_one(small, tmp_path):
    """Killed after epoch 1 and resumed from its file, a dropout MLP trained on jittered
    images ends with the very weights and history of a run that was never stopped."""
    train, test = data.transfer_set(small[0], fraction=0.1, seed=0), small[1].subset(torch.arange(300))

    def dropout_mlp(seed):  # mlp-1200's regularisation (dropout on inputs and hidden units), small
        torch.manual_seed(seed)
        return MLP(ModelSpec("mlp-30"), (30,), dropout=0.5, input_dropout=0.2)

    straight = dropout_mlp(0)
    whole = _run_with_resume(straight, build_method("baseline", straight), train, test, tmp_path / "a.pt", jitter=2)

    first = dropout_mlp(0)
    interrupted = _run_with_resume(first, build_method("baseline", first), train, test, tmp_path / "b.pt",
                                   stop_after_epoch=1, jitter=2)
    assert interrupted[-1].stopped and len(interrupted[-1].history) == 1
    again = dropout_mlp(5)  # other initial weights: everything must come from the file
    resumed = _run_with_resume(again, build_method("baseline", again), train, test, tmp_path / "b.pt", jitter=2)
    assert [e.epoch for e in resumed if isinstance(e, EpochDone)] == [2, 3]
    assert _without_timings(resumed[-1:]) == _without_timings(whole[-1:])
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in straight.state_dict().items())

    # a finished run's file resumes to the end at once; other settings are refused
    done = _run_with_resume(again, build_method("baseline", again), train, test, tmp_path / "b.pt", jitter=2)
    assert not any(isinstance(e, StepDone) for e in done) and done[-1].test_acc == whole[-1].test_acc
    with pytest.raises(ValueError, match="other settings.*jitter"):
        _run_with_resume(again, build_method("baseline", again), train, test, tmp_path / "b.pt", jitter=1)


def test_jitter_changes_the_pixels_the_net_sees(small):
    """With jitter the teacher cannot be cached, and two epochs see differently shifted images."""
    settings = TrainSettings(jitter=2)
    assert settings.random_inputs and not TrainSettings().random_inputs
    with pytest.raises(ValueError, match="jitter"):
        TrainSettings(jitter=-1).validate()
