"""benchmarks/papers.py --import-methods: the method tables published in BENCHMARKS.md become reference
files, and a row the markdown does not publish (RKD for the MLP students) comes from finished runs.
benchmarks/speed.py: a run writes its own kind of machine's blocks, beside another kind's."""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from kdviz import reference
from kdviz.runs import save_record
from kdviz.sweep import run_key

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import app_speed  # noqa: E402
import methods  # noqa: E402
import papers  # noqa: E402
import torch  # noqa: E402

import sections  # noqa: E402
import speed  # noqa: E402

RKD = "rkd (distance 25, angle 50)"


def _markdown(path: Path) -> Path:
    """A methods section with the MNIST CNN → MLP-800 table: two published rows, no RKD row."""
    block = methods.mnist_blocks(10, 2, 0.25)[0]
    path.write_text("\n".join([
        "# Benchmarks", methods.START, f"### {block.title}", "",
        "| method | test accuracy % (mean ± std) | per seed | train s / run |", "|---|---|---|---|",
        "| baseline (labels only) | 98.58 ± 0.05 | 98.62 / 98.53 / 98.59 | 101 |",
        "| kd (T=4, α=0.9) | 99.15 ± 0.03 | 99.15 / 99.18 / 99.12 | 88 |", "", methods.END, ""]))
    return path


def _finished(runs_dir: Path, config: dict, seed: int, acc: float, host: str | None = None) -> None:
    """A finished run's record of ``config`` at ``seed``, as the sweep keeps it (on this host unless given)."""
    config = json.loads(json.dumps(config))
    config["train"]["seed"] = seed
    save_record({"id": f"run-{run_key(config)[:8]}-{seed}", "created": f"2026-12-01T07:0{seed}:00", "config": config, "method": "rkd",
                 "seed": seed, "test_acc": acc, "train_time_s": 250.0 + seed, "dataset": {"test_size": 10000},
                 "student": {"name": "mlp-800"}, "history": [{"epoch": 10, "test_acc": acc}],
                 "runner": {"executor": "local", "host": host or socket.gethostname(), "threads": 1}}, runs_dir)


def _rkd_config() -> dict:
    block = methods.mnist_blocks(10, 2, 0.25)[0]
    row = next(r for r in block.rows if r.label == RKD)
    return papers._config(block.dataset, block.student, row.method, block.teacher, row.params, epochs=block.epochs,
                          fraction=block.fraction, augment=block.augment)


def test_a_row_not_published_comes_from_its_finished_runs_with_records_and_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_REFERENCE", str(tmp_path / "reference"))
    runs = tmp_path / "runs"
    for seed, acc in zip(papers.SEEDS, (0.9871, 0.9880, 0.9866)):
        _finished(runs, _rkd_config(), seed, acc)
    _finished(runs, {**_rkd_config(), "params": {"angle_weight": 0}}, 0, 0.5)  # another config: not this row's
    written = papers.import_methods_tables(_markdown(tmp_path / "B.md"), runs_dir=runs)
    assert [p.name for p in written] == ["51-methods-mnist-cnn-mlp800.json"]
    table = reference.read_table(written[0])
    labels = [r.label for r in table.rows]
    assert labels == ["baseline (labels only)", "kd (T=4, α=0.9)", RKD]  # published rows first, as the block lists them
    rkd = table.rows[-1]
    assert [round(100 * r["test_acc"], 2) for r in rkd.runs] == [98.71, 98.80, 98.66]
    assert all(r["record"]["config"]["method"] == "rkd" for r in rkd.runs)  # records kept, unlike the published rows
    assert run_key(reference.row_configs(rkd, [0])[0]) == run_key(reference.row_configs({"config": _rkd_config()}, [0])[0])
    assert "--method rkd" in rkd.command and "--teacher mnist-cnn" in rkd.command
    note = next(n for n in table.notes if n.startswith(RKD))
    assert "measured 2026-12-01" in note and "run records kept" in note and "mnist-cnn" in note
    assert papers.recipes.cpu_description() in note and "1 torch thread(s) per run, fp32" in note
    assert table.rows[1].runs[0]["test_acc"] == 0.9915 and "record" not in table.rows[1].runs[0]


def test_a_row_with_a_seed_missing_is_left_out(tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_REFERENCE", str(tmp_path / "reference"))
    runs = tmp_path / "runs"
    for seed in papers.SEEDS[:2]:
        _finished(runs, _rkd_config(), seed, 0.987)
    table = reference.read_table(papers.import_methods_tables(_markdown(tmp_path / "B.md"), runs_dir=runs)[0])
    assert RKD not in [r.label for r in table.rows]
    assert not any(n.startswith(RKD) for n in table.notes)


def test_runs_from_another_host_are_not_given_this_machines_cpu(tmp_path, monkeypatch):
    """A record names its host, not its CPU: runs made elsewhere are credited to their host."""
    monkeypatch.setenv("KDVIZ_REFERENCE", str(tmp_path / "reference"))
    runs = tmp_path / "runs"
    for seed in papers.SEEDS:
        _finished(runs, _rkd_config(), seed, 0.987, host="gpu-box")
    table = reference.read_table(papers.import_methods_tables(_markdown(tmp_path / "B.md"), runs_dir=runs)[0])
    note = next(n for n in table.notes if n.startswith(RKD))
    assert "on host gpu-box," in note and papers.recipes.cpu_description() not in note


def test_speed_blocks_are_kept_per_kind_of_machine(tmp_path):
    cpu = torch.device("cpu")
    assert speed.machine_kind(cpu, {"avx2", "avx512f", "avx512_bf16"}) == ""  # a Xeon with AVX-512 BF16
    assert speed.machine_kind(cpu, {"avx2", "amx_tile", "amx_bf16"}) == ""
    assert speed.machine_kind(cpu, {"avx2", "fma"}) == "-no-bf16"  # an AVX2-only EPYC: bf16 emulated
    assert speed.machine_kind(torch.device("cuda"), {"avx2", "avx512_bf16"}) == "-gpu"

    def blocks(kind: str, text: str, parts=("steps", "rkd")) -> dict[str, str]:
        return {f"{part}{kind}": "\n".join([speed.part_marker(f"{part}{kind}", "start"), f"{part} {text}",
                                            speed.part_marker(f"{part}{kind}", "end")]) for part in parts}

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Elsewhere\nkept\n")
    speed.write_parts({**blocks("", "on the Xeon"), **blocks("-gpu", "on the H200")}, path)
    speed.write_parts(blocks("-no-bf16", "on the EPYC"), path)
    text = path.read_text()
    # a reading written by hand after a block, before the next kind's blocks, stays where it is
    path.write_text(text.replace(speed.part_marker("rkd-no-bf16", "end"),
                                 speed.part_marker("rkd-no-bf16", "end") + "\n\nReading the EPYC's figures.\n"))
    speed.write_parts(blocks("", "on the Xeon again"), path)
    text = path.read_text()
    assert text.index("rkd on the EPYC") < text.index("Reading the EPYC's figures.") < text.index("steps on the H200")
    assert "steps on the Xeon again" in text and text.count("Reading the EPYC's figures.") == 1
    assert text.index("steps on the Xeon") < text.index("rkd on the Xeon") < text.index("steps on the EPYC") \
        < text.index("rkd on the EPYC") < text.index("steps on the H200")
    speed.write_parts(blocks("-no-bf16", "on the EPYC again", parts=("steps",)), path)
    text = path.read_text()
    assert "steps on the EPYC again" in text and "steps on the EPYC\n" not in text
    for kept in ("rkd on the EPYC", "steps on the Xeon", "rkd on the Xeon", "steps on the H200", "## Elsewhere\nkept"):
        assert kept in text


def test_app_speed_block_of_another_kind_goes_after_the_main_one(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    main_start, main_end = app_speed.markers("")
    path.write_text(f"# Benchmarks\n\n{main_start}\nthe Xeon's\n{main_end}\n\nits notes\n\n## Next section\n")
    epyc_start, epyc_end = app_speed.markers("-no-bf16")
    for text in ("the EPYC's", "the EPYC's again"):
        sections.replace_section(path, epyc_start, epyc_end, f"{epyc_start}\n{text}\n{epyc_end}", after=main_end)
    text = path.read_text()
    assert text.index("the Xeon's") < text.index("the EPYC's again") < text.index("its notes") < text.index("## Next")
    assert text.count(epyc_start) == 1 and "the EPYC's\n" not in text


def test_app_speed_tables_have_a_column_per_case_and_a_breakdown_row_for_each_case_at_once():
    """A page measured in all four cases fills its row; a case not measured is a dash; a page with no chart
    says so; the breakdown lists warm, warmed up and returning for each page with a chart, none for the rest."""
    row = {"app_js_s": 0.2, "run_start_s": 1.3, "chart_sent_s": 3.4, "plotly_fetch_s": (0.1, 0.45), "ready_s": 0.72}
    pages = {
        "Temperature": {"cold": {"first_chart_s": 4.21, "server_run_s": 2.85},
                        "warm": {**row, "first_chart_s": 4.34, "server_run_s": 2.46},
                        "warmed up": {**row, "first_chart_s": 3.26, "server_run_s": 0.32, "warmup_s": 9.6},
                        "returning": {**row, "first_chart_s": 4.22, "server_run_s": 3.02}},
        "Train (live)": {"warm": {"first_chart_s": None, "server_run_s": 3.05}},
    }
    slider = {"moves": 2, "median_s": 0.145, "max_s": 0.4, "all_median_s": 0.43, "all_max_s": 0.73, "charts_changed": 5,
              "fragment_median_s": 0.063, "fragment_max_s": 0.2, "server_cpu_median_s": 0.04, "new_moves": 1,
              "new_T_median_s": 0.148, "fragment_new_T_median_s": 0.065, "seen_T_median_s": 0.14,
              "fragment_seen_T_median_s": 0.06, "page_runs": 0, "fragment_runs": 2}
    text = app_speed.markdown(pages, slider, "a CPU", "the command", 1.0, "-no-bf16")
    lines = text.splitlines()
    assert lines[0] == app_speed.markers("-no-bf16")[0] and lines[-1] == app_speed.markers("-no-bf16")[1]
    assert "| page | cold (s) | warm (s) | warmed up (s) | returning (s) |" in lines
    assert "| Temperature | 4.21 (2.85) | 4.34 (2.46) | 3.26 (0.32) | 4.22 (3.02) |" in lines
    assert "| Train (live) | — | no chart (3.05) | — | — |" in lines
    cases = [line.split(" | ")[1] for line in lines if line.startswith("| Temperature | ") and line.count("|") == 9]
    assert cases == ["warm", "warmed up", "returning"]
    assert "| Temperature | returning | 0.20 | 1.30 | 3.40 | 0.10–0.45 | 4.22 | 0.72 |" in lines
    assert not any(line.startswith("| Train (live) | warm") for line in lines)
    assert "it took a median 9.6 s" in text


def test_app_speed_checks_name_the_pages_over_the_target_and_leave_out_pages_without_a_chart():
    """issue_checks: every case of a page's first chart against its target (3 s with a warm cache, 5 s cold),
    a page over it named with its time, a page that failed to show a chart named too, a page whose first view
    has no chart by design left out; the slider's median against 250 ms and its fragment against 100 ms."""
    pages = {"Home": {"cold": {"first_chart_s": 4.9}, "warm": {"first_chart_s": 2.8}, "warmed up": {"first_chart_s": 2.1}},
             "FSP matrices": {"cold": {"first_chart_s": 5.2}, "warm": {"first_chart_s": 3.4}, "warmed up": {"first_chart_s": 2.9}},
             "Attention maps": {"warm": {"first_chart_s": None, "error": "no chart within 60 s"}},
             "Train (live)": {"warm": {"first_chart_s": None, "error": app_speed.NO_CHART}}}
    slider = {"median_s": 0.145, "fragment_median_s": 0.12}
    lines = app_speed.issue_checks(pages, slider)
    assert lines[0] == "- slider, key press to bars redrawn, median: 145.0 ms (target ≤ 250 ms): met"
    assert lines[1] == "- slider, the server's fragment rerun, median: 120.0 ms (target ≤ 100 ms): MISSED"
    by_case = {line.split(":")[0]: line for line in lines[2:]}
    assert by_case["- first chart, cold"].endswith("4.90-5.20 s on 2 pages (target ≤ 5 s on every page): MISSED (FSP matrices 5.20 s)")
    assert by_case["- first chart, warm"].endswith("MISSED (FSP matrices 3.40 s; Attention maps: no chart within 60 s)")
    assert by_case["- first chart, warmed up"].endswith("2.10-2.90 s on 2 pages (target ≤ 3 s on every page): met")
    assert "- first chart, returning" not in by_case and "Train" not in "".join(lines)
    one = app_speed.issue_checks({"Home": {"returning": {"first_chart_s": 2.5}}}, None)
    assert one == ["- first chart, returning: 2.50 s on 1 page (target ≤ 3 s on every page): met"]


def test_speed_checks_judge_each_target_and_the_step_speed_up_only_on_a_cpu_with_native_bf16():
    """speed.issue_checks: the cnn5 speed-up from the steps' measurements (default now over before), the
    preset's seconds to 98% for every seed (a seed that never got there misses), the median start-up and
    live-page ratio, the RKD terms; on a CPU without native bf16 the speed-up is shown but not judged."""
    before = speed.SETUPS[0][0]
    raw = {"steps": {("cnn5", before): 3000.0, ("cnn5", "bf16, channels-last"): 6000.0},
           "preset": {"runs": {("baseline", 0): {"to_98": None}, ("kd", 0): {"to_98": 1.2}, ("kd", 1): {"to_98": 2.9}}},
           "startup": {"runs": [{"wall": 2.6, "train": 1.3}, {"wall": 6.0, "train": 1.4}, {"wall": 2.7, "train": 1.3}]},
           "rkd": {("distance", "Gram matrix (now)"): 2.6, ("angle", "Gram matrix (now)"): 41.0},
           "live-page": {"cli": [{"train": 1.4}, {"train": 1.5}], "page": [{"train": 1.6}, {"train": 2.0}]}}
    lines = speed.issue_checks(raw, "", "bf16")
    assert lines == [
        "- cnn5 step, default over before: 2.00× (target ≥ 1.8×): met",
        "- the preset's KD past 98%, seconds of training per seed: 1.20 / 2.90 (target ≤ 3 s, every seed): met",
        "- a warm CLI run's start-up beyond training, median: 1.40 s (target ≤ 3 s): met",
        "- RKD distance, forward + backward: 2.60 ms (target ≤ 10 ms): met",
        "- RKD angle, forward + backward: 41.00 ms (target ≤ 40 ms): MISSED",
        "- a live run on the Train page over the CLI, median: 1.24× (target ≤ 1.2×): MISSED"]
    raw["preset"]["runs"][("kd", 2)] = {"to_98": None}
    raw["steps"] = {("cnn5", before): 3000.0, ("cnn5", "fp32, channels-last"): 4000.0}
    lines = speed.issue_checks(raw, "-no-bf16", "fp32")
    assert lines[0] == "- cnn5 step, default over before: 1.33× (the 1.8× target is for a CPU with native bf16: not judged here)"
    assert lines[1].endswith("1.20 / 2.90 / never (target ≤ 3 s, every seed): MISSED")
