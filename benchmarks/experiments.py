"""Write BENCHMARKS.md's "Experiments" section from the shipped result files.

    python benchmarks/experiments.py            # reads results/experiments/*.json, rewrites the section

Each experiment's full result is made by its own command (written in the file and in the
table), e.g. ``kdviz experiment missing-class --preset full --out results/experiments/missing-class.json``;
this script only reads the files and puts every number beside the paper's figure. An
experiment without a shipped file is listed as not measured.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kdviz import experiments as ex  # noqa: E402

from sections import replace_section  # noqa: E402

START, END = "<!-- experiments:start -->", "<!-- experiments:end -->"


def pct(stat) -> str:
    if not isinstance(stat, dict):
        return "–"
    spread = f" ± {100 * stat['std']:.2f}" if stat.get("n", 1) > 1 else ""
    return f"{100 * stat['mean']:.2f}{spread}%"


def seeds(stat) -> str:
    return f"{stat['n']} seeds" if stat.get("n", 1) > 1 else "1 seed"


def missing_class(r) -> list[str]:
    s, rows = r.summary, {row["student"]: row for row in r.summary["table"]}
    p = s["paper"]
    return [
        "| student | test 3s right | all test images | Hinton et al. 2015 (3s right) |",
        "|---|---|---|---|",
        f"| labels only (no 3s) | {pct(rows['labels only']['missing_acc'])} | {pct(rows['labels only']['overall_acc'])} | – |",
        f"| KD, T = {r.settings['T']:g} | {pct(rows['KD']['missing_acc'])} | {pct(rows['KD']['overall_acc'])} | "
        f"{100 * p['kd_missing_acc']:.1f}% (133 of 1010 wrong) |",
        f"| KD + bias (+{s['bias']['mean']:.2f} ± {s['bias']['std']:.2f}, chosen on {s['validation_images']:,} "
        f"held-out training images) | {pct(rows['KD + bias']['missing_acc'])} | {pct(rows['KD + bias']['overall_acc'])} | "
        f"{100 * p['kd_bias_missing_acc']:.1f}% (bias +{p['bias']:g}) |",
        "",
        f"{seeds(rows['KD']['missing_acc'])}; {s['missing_test_images']:,} test 3s.",
    ]


def no_labels(r) -> list[str]:
    s = r.summary
    return [
        "| student | test accuracy | poster (MLP-800, no labels) |",
        "|---|---|---|",
        f"| labels only | {pct(s['labels_acc'])} | – |",
        f"| teacher's soft targets only (KD T = {r.settings['T']:g}, α = 1, labels hidden) | {pct(s['no_labels_acc'])} | "
        f"{100 * s['paper']['acc_lr_0.01']:.2f}% (lr 0.01), {100 * s['paper']['acc_lr_0.1']:.2f}% (lr 0.1) |",
        "",
        f"{seeds(s['no_labels_acc'])}.",
    ]


def data_free(r) -> list[str]:
    s = r.summary
    lines = [
        "| student | training images | test accuracy (real MNIST test set) |",
        "|---|---|---|",
        f"| {r.settings['student']}, KD (T = {r.settings['T']:g}, α = 1) on dreamed images only | "
        f"{s['dreamed_images']:,} dreamed ({r.settings['dream_steps']} steps each; the teacher takes "
        f"{100 * s['teacher_agrees_on_dreams']:.1f}% as the class asked for) | {pct(s['student_acc'])} |",
    ]
    if s.get("labels_only_real_data"):
        lines.append(f"| mlp-800 on labels (no-labels experiment) | 60,000 real | {pct(s['labels_only_real_data'])} |")
    lines += ["", f"Dreaming took {s['dream_seconds'] / 60:.0f} min. {s['method']}. Paper: {s['paper']['source']}."]
    return lines


def temperature(r) -> list[str]:
    s = r.summary
    lines = ["| α \\ T | " + " | ".join(f"{t:g}" for t in s["temperatures"]) + " |",
             "|---|" + "---|" * len(s["temperatures"])]
    for a, row in zip(s["alphas"], s["grid_acc"]):
        lines.append(f"| {a:g} | " + " | ".join(f"{100 * v:.2f}%" for v in row) + " |")
    st = r.settings
    lines += ["", f"{st['student']} from {st['teacher']} on {100 * st['fraction']:g}% of {st['dataset']}, {st['epochs']} "
              f"epochs, {seeds(s['baseline_acc'])}; labels only (same budget): {pct(s['baseline_acc'])}. "
              f"Best α = {s['best']['alpha']:g}, T = {s['best']['T']:g}; at T = 1 every α stays at the labels-only "
              "accuracy (the teacher's T = 1 outputs are nearly one-hot)."]
    return lines


def generic(r) -> list[str]:
    table = r.summary.get("table", [])
    if not table:
        return []
    columns = list(table[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        lines.append("| " + " | ".join(pct(v) if isinstance(v, dict) else str(v) for v in row.values()) + " |")
    return lines


WRITERS = {"missing-class": missing_class, "no-labels": no_labels, "data-free": data_free, "temperature": temperature}


def section() -> str:
    out = ["## Experiments (`kdviz experiment NAME --preset full`)", "",
           "The papers' experiments (`kdviz/experiments.py`, the app's **Experiments** page). Each full result below "
           "is read from `results/experiments/NAME.json`, written by the command shown, on the machine shown; "
           "`python benchmarks/experiments.py` rewrites this section from those files. Every run is an ordinary run "
           "record, trained with one torch thread on a 2-core Intel Xeon (AMX, avx512_bf16, bf16 autocast) shared "
           "with other jobs, so wall times are several times what an idle machine needs.", ""]
    for name, entry in ex.EXPERIMENTS.items():
        out.append(f"### {entry.title} ({name}; {entry.paper})")
        out.append("")
        try:
            r = ex.load_result(name)
        except FileNotFoundError:
            out += ["Not measured at the full preset on this machine: its budget did not fit the session "
                    f"(2 shared cores). Make it with `kdviz experiment {name} --preset full "
                    f"--out results/experiments/{name}.json`; `--preset quick` runs in about a minute.", ""]
            continue
        out += [f"`{r.command}` · {r.date[:16].replace('T', ' ')} · {r.machine} · {len(r.records)} runs, "
                f"{r.elapsed_s / 60:.0f} min", ""]
        out += (WRITERS.get(name) or generic)(r) + [""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    replace_section(ROOT / "BENCHMARKS.md", START, END, f"{START}\n{section()}{END}")
    print(section())


if __name__ == "__main__":
    main()
