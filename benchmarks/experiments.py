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
    if s.get("dream_seconds") is None:
        took = "The dreamed images were made by an earlier command, which kept no time."
    else:
        took = f"Dreaming took {s['dream_seconds'] / 60:.0f} min" + (
            " (in the command that made the images; this one reused them)." if s.get("dreams_reused") else ".")
    acc = s["student_acc"]
    spread = (f"{seeds(acc)} of the student (initialisation and batch order: "
              f"{', '.join(f'{100 * v:.2f}%' for v in acc['values'])}), all on the one dreamed set (dreamed with seed "
              f"{r.settings['seeds'][0]}). ") if acc.get("n", 1) > 1 else ""
    lines += ["", f"{spread}{took} {s['method']}. Paper: {s['paper']['source']}."]
    return lines


def temperature(r) -> list[str]:
    s = r.summary
    lines = ["| α \\ T | " + " | ".join(f"{t:g}" for t in s["temperatures"]) + " |",
             "|---|" + "---|" * len(s["temperatures"])]
    for a, row in zip(s["alphas"], s["grid_acc"]):
        lines.append(f"| {a:g} | " + " | ".join(f"{100 * v:.2f}%" for v in row) + " |")
    st = r.settings
    lines += ["", f"{st['student']} from {st['teacher']} on {100 * st['fraction']:g}% of {st['dataset']}, {st['epochs']} "
              f"epochs, {seeds(s['baseline_acc'])} (standard deviation of a cell up to "
              f"{100 * max(max(row) for row in s['grid_std']):.2f} points); labels only (same budget): "
              f"{pct(s['baseline_acc'])}. "
              f"Best α = {s['best']['alpha']:g}, T = {s['best']['T']:g}; at T = 1 every α stays at the labels-only "
              "accuracy (the teacher's T = 1 outputs are nearly one-hot)."]
    return lines


def little_data(r) -> list[str]:
    s, st = r.summary, r.settings
    paper = s["paper"]
    cifar = st["dataset"] == "cifar10"
    lines = ["| training images | epochs | labels only | KD (T = {:g}, α = {:g}) | KD − labels |".format(st["T"], st["alpha"])
             + (" poster (5-layer CNN) |" if cifar else ""),
             "|---|---|---|---|---|" + ("---|" if cifar else "")]
    for row in s["table"]:
        gain = 100 * (row["kd"]["mean"] - row["labels_only"]["mean"])
        poster = ""
        if cifar:
            poster = (f" {100 * paper['labels_only_5pct']:.2f}% → {100 * paper['kd_5pct']:.2f}% |"
                      if abs(row["fraction"] - 0.05) < 1e-9 else " – |")
        lines.append(f"| {100 * row['fraction']:g}% ({row['images']:,}) | {row['epochs']} | {pct(row['labels_only'])} | "
                     f"{pct(row['kd'])} | {gain:+.2f} points |" + poster)
    aug = "random crop + flip (the teacher runs on every batch)" if st.get("augment") else "no augmentation"
    lines += ["", f"{st['student']} from {st['teacher']} on {st['dataset']}, {seeds(s['table'][0]['kd'])}; a fraction f "
              f"trains min({st['max_epochs']}, {st['epochs']}/f) epochs (about the same number of steps, capped), "
              f"{aug}, lr {st['lr']:g}, batch {st['batch_size']}."]
    if cifar:
        lines.append(f"The poster's point: {paper['source']}: {100 * paper['labels_only_5pct']:.2f}% → "
                     f"{100 * paper['kd_5pct']:.2f}% with KD. Our budget is a short one, chosen to fit about half "
                     f"an hour of one CPU core (at most {st['max_epochs']} epochs a run, {st['epochs']} at 100%; the "
                     f"runs took {sum(x.get('wall_time_s') or 0 for x in r.records) / 60:.0f} min of training here), "
                     "so our absolute accuracies are lower than the poster's: compare the gaps.")
    return lines


def born_again(r) -> list[str]:
    s, st = r.summary, r.settings
    lines = ["| member | test accuracy | vs generation 0 |", "|---|---|---|"]
    base = s["generations"][0]["mean"]
    for row in s["table"]:
        lines.append(f"| {row['member']} | {pct(row['acc'])} | {100 * (row['acc']['mean'] - base):+.2f} points |")
    lines += ["", f"{st['student']} on {100 * st['fraction']:g}% of {st['dataset']} (the same images for every "
              f"generation), {st['epochs']} epochs a generation, "
              f"T = {st['T']:g}, α = {st['alpha']:g} (each generation learns only from the one before), "
              f"{seeds(s['ensemble'])}. Paper: {s['paper']['source']}."]
    best = max(g["mean"] - base for g in s["generations"][1:])
    noise = max(g["std"] for g in s["generations"])
    if best > 2 * noise:
        lines.append(f"The best later generation gains {100 * best:+.2f} points, more than twice the seeds' spread: "
                     "students beat their teacher here too.")
    else:
        lines.append(f"The best later generation gains {100 * best:+.2f} points, within about "
                     f"{max(1, round(best / noise)) if noise else 1} standard deviation(s) of the seeds "
                     f"(up to {100 * noise:.2f}): the paper's gain shows at most weakly at this budget.")
    return lines
    return lines


def fast_optimisation(r) -> list[str]:
    s, st = r.summary, r.settings
    sc, fs = s["scratch"], s["fsp"]
    lines = ["| label epoch | " + " | ".join(str(e) for e in sc["epoch"]) + " |", "|---|" + "---|" * len(sc["epoch"])]
    lines.append("| labels from scratch | " + " | ".join(f"{100 * a:.2f}%" for a in sc["acc"]) + " |")
    lines.append("| FSP stage, then labels | " + " | ".join(f"{100 * a:.2f}%" for a in fs["acc"]) + " |")
    lines.append("| seconds (scratch / FSP, FSP stage included) | "
                 + " | ".join(f"{a:.0f} / {b:.0f}" for a, b in zip(sc["seconds"], fs["seconds"])) + " |")
    reach = s["epochs_to_target"]
    rows = {row["student"].split(" (")[0]: row for row in s["table"][:2]}  # the full-length runs
    final = " vs ".join(f"{k}: {pct(v['acc'])}" for k, v in rows.items())
    epochs = len(sc["epoch"])
    verdict = (f"the FSP student takes {reach['fsp']}" if reach["fsp"] else
               f"the FSP student does not get there before the end of the {epochs}")
    lines += ["", f"{st['student']} from {st['teacher']} on {100 * st['fraction']:g}% of {st['dataset']}, {st['epochs']} "
              f"label epochs (one-cycle schedule), FSP stage {st['fsp_epochs']} epoch "
              f"({s['fsp_phase_s']['mean']:.0f} s), mean over {seeds(s['fsp_phase_s'])}. Final: {final}. To reach the "
              f"scratch student's final accuracy ({100 * s['target_acc']:.2f}%), the scratch student takes "
              f"{reach['scratch']} label epochs and {verdict} (one run, one schedule). "
              f"Paper: {s['paper']['source']}."]
    third = s.get("third")
    if third:
        lines += ["", f"As the paper compared them (each student with its own schedule of a third of the label epochs, "
                  f"{third['epochs']}): FSP stage then labels {pct(third['fsp'])} "
                  f"({third['seconds']['fsp']['mean']:.0f} s), labels from scratch {pct(third['scratch'])} "
                  f"({third['seconds']['scratch']['mean']:.0f} s), against {100 * s['target_acc']:.2f}% for the "
                  f"scratch student after all {epochs}: the claim "
                  f"{'holds' if third['fsp_matches_full_scratch'] else 'does not hold'} here."]
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


WRITERS = {"missing-class": missing_class, "no-labels": no_labels, "data-free": data_free, "temperature": temperature,
           "little-data": little_data, "born-again": born_again, "fast-optimisation": fast_optimisation}


def section() -> str:
    out = ["## Experiments (`kdviz experiment NAME --preset full`)", "",
           "The papers' experiments (`kdviz/experiments.py`, the app's **Experiments** page). Each full result below "
           "is read from `results/experiments/NAME.json`, written by the command shown, on the machine shown; "
           "`python benchmarks/experiments.py` rewrites this section from those files. Every run is an ordinary run "
           "record, trained with one torch thread on a 2-core Intel Xeon (avx512_bf16, no AMX; precision auto = fp32) "
           "shared with other jobs, so wall times are up to several times what an idle machine needs.", ""]
    for name, entry in ex.EXPERIMENTS.items():
        out.append(f"### {entry.title} ({name}; {entry.paper})")
        out.append("")
        presets = ex.shipped_presets(name)
        for preset in presets:
            stem = ex.result_name(name, preset)
            if len(presets) > 1:
                out += [f"#### {ex.settings_for(name, preset).dataset}", ""]
            try:
                r = ex.load_result(stem)
            except FileNotFoundError:
                out += ["Not measured at this preset on this machine: its budget did not fit the session "
                        f"(2 shared cores). Make it with `kdviz experiment {name} --preset {preset} "
                        f"--out results/experiments/{stem}.json`; `--preset quick` runs in about a minute.", ""]
                continue
            out += [f"`{r.command}` · {r.date[:16].replace('T', ' ')} · {r.machine} · {ex.cost_note(r)}", ""]
            out += (WRITERS.get(name) or generic)(r) + [""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    replace_section(ROOT / "BENCHMARKS.md", START, END, f"{START}\n{section()}{END}")
    print(section())


if __name__ == "__main__":
    main()
