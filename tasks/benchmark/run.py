#!/usr/bin/env python3
"""Compare data selectors for distillation at an equal budget on SynthDomains.

For every selector × budget × seed of the benchmark YAML (and the full pool),
distil the teacher into a student on the selected subset with the
distillation recipe (which also scores the student's distillation loss on
held-out audio of every domain), then score the student with the probes of
``probes`` (ASR, speaker, or none); score the reference encoders (teacher,
MFCC) with the same probes. Every student gets the same compute: the same
optimizer steps on fixed segments of the same length
(``segment_seconds``, ``steps_per_epoch``, ``number_of_epochs``).

Each recipe run (a *cell*) is a subprocess run from the repository root, its
output appended to ``<output_folder>/logs/<kind>-<name>.log``. A cell is
skipped when it finished before with the same command (recorded in
``benchmark_cell.json`` in its output folder); a cell whose command changed is
run again from scratch; an unfinished cell resumes from the recipe's own
checkpoints. ``results.md``, ``results.json`` and ``results.png`` are rewritten
after every cell from the cells finished so far.

Usage
-----
python recipes/SynthDomains/benchmark/run_benchmark.py recipes/SynthDomains/benchmark/hparams/benchmark.yaml
python recipes/SynthDomains/benchmark/run_benchmark.py recipes/SynthDomains/benchmark/hparams/benchmark_quick.yaml
python recipes/SynthDomains/benchmark/run_benchmark.py <hparams> --dry_run=True   # the plan, nothing run
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import speechbrain as sb
from tqdm import tqdm

from common.atomic import atomic_write_text
from common.hparams import load_hparams as load_hparams_file
from tasks.benchmark.cells import ROOT, TRAINING_KEYS, build_plan, resolve
from tasks.benchmark.report import row_record, write_report
from tasks.benchmark.statistics import cell_errors, heldout_errors, speaker_errors

RECORD = "benchmark_cell.json"
ERRORS_OF_CELL = {"asr": cell_errors, "spk": speaker_errors, "distill": heldout_errors}  # per-utterance results


def read_record(cell):
    """The cell's ``benchmark_cell.json`` (``argv``, ``finished``, ``minutes``), or None."""
    path = cell.output_folder / RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): delete it to run the cell again") from error


def write_record(cell, finished, minutes=None):
    """Record the cell's whole command and whether it finished, next to its outputs."""
    record = {"argv": list(cell.argv), "finished": finished, "minutes": minutes,
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(cell.output_folder / RECORD, json.dumps(record, indent=2))


def cell_state(cell):
    """``done``, ``stale`` (recorded with another command) or ``todo`` (new, or unfinished: resumes).

    The interpreter (``argv[0]``) is recorded but not compared, so the same
    command through another path to the same venv is still the same cell.
    """
    record = read_record(cell)
    if record is None:
        return "todo"
    if record["argv"][1:] != list(cell.argv[1:]):
        return "stale"
    return "done" if record["finished"] and cell.result_file.exists() else "todo"


def reset(cell):
    """Delete a cell's outputs (checkpoints included), so that it runs from scratch."""
    if cell.output_folder.exists():
        shutil.rmtree(cell.output_folder)


def run_cell(cell, log_path):
    """Run one cell as a subprocess from the repository root, its output appended to ``log_path``.

    Returns
    -------
    outcome : str
        ``done`` (exit status 0 and the result file written) or ``failed``.
    minutes : float
        Wall time of this run.
    """
    cell.output_folder.mkdir(parents=True, exist_ok=True)
    write_record(cell, finished=False)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n# {datetime.now(timezone.utc).isoformat(timespec='seconds')} {shlex.join(cell.argv)}\n")
        log.flush()
        status = subprocess.run(cell.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    minutes = (time.time() - started) / 60
    if status != 0 or not cell.result_file.exists():
        return "failed", minutes
    write_record(cell, finished=True, minutes=round(minutes, 2))
    return "done", minutes


def load_results(cell):
    """The parsed result file of a finished cell, else None."""
    if cell_state(cell) != "done":
        return None
    return json.loads(cell.result_file.read_text(encoding="utf-8"))


def load_selection_record(cell):
    """The ``selection.json`` of a finished distillation (``<output>/selection/``), else None."""
    path = cell.output_folder / "selection" / "selection.json"
    if cell.kind != "distill" or cell_state(cell) != "done" or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def log_path(folder, cell):
    """``<output_folder>/logs/<kind>-<name>.log``."""
    return folder / "logs" / f"{cell.kind}-{cell.name}.log"


def progress_line(cell, outcome, minutes, log):
    """The one line printed per cell."""
    return f"{cell.kind:7s} {cell.name:24s} " + {
        "done": f"done in {minutes:.1f} min", "skipped": "skipped: finished earlier with the same command",
        "blocked": "not run: its distillation did not finish",
        "failed": f"FAILED after {minutes:.1f} min, see {log}"}[outcome]


class Benchmark:
    """The planned rows of a benchmark YAML, run in order, with the report kept up to date.

    Parameters
    ----------
    hp : dict
        The loaded benchmark YAML.
    """

    def __init__(self, hp):
        self.hp = hp
        self.rows, self.hours = build_plan(hp)
        self.folder = resolve(hp["output_folder"])
        self.n_cells = sum(len(row.cells) for row in self.rows)

    def report(self):
        """Rewrite results.md/json/png from the cells finished so far."""
        results = [{**{cell.kind: load_results(cell) for cell in row.cells},
                    "selection": load_selection_record(row.cells[0])} for row in self.rows]
        settings = {"benchmark_name": self.hp["benchmark_name"], "pool_hours": round(self.hours, 4),
                    **{key: self.hp[key] for key in TRAINING_KEYS},
                    "finished_cells": sum(res[cell.kind] is not None
                                          for row, res in zip(self.rows, results) for cell in row.cells),
                    "total_cells": self.n_cells, "target_aware": list(self.hp["target_aware"]),
                    "baseline": self.hp["baseline"], "more_baselines": list(self.hp.get("more_baselines") or [])}
        errors = {}
        for row, res in zip(self.rows, results):
            for cell in row.cells:
                if res[cell.kind] is not None:
                    errors.setdefault(row.name, {}).update(ERRORS_OF_CELL[cell.kind](cell.output_folder))
        write_report([row_record(row, res) for row, res in zip(self.rows, results)], settings, self.folder, errors)

    def run_row(self, row, bar):
        """Run the cells of one row in order; returns a line per failed cell.

        A student's probes wait for its distillation (not run when it
        failed), and are reset when it ran again (their student changed).
        With ``delete_student_features`` the student's probe features are
        deleted once both probes have finished.
        """
        failed, blocked, outcomes = [], False, []
        for cell in row.cells:
            minutes, log = 0.0, log_path(self.folder, cell)
            state = "blocked" if blocked else cell_state(cell)
            if state in ("blocked", "done"):
                outcome = "skipped" if state == "done" else "blocked"
            else:
                if state == "stale":
                    reset(cell)
                bar.set_postfix_str(f"{cell.kind} {cell.name}")
                outcome, minutes = run_cell(cell, log)
                if cell.kind == "distill" and outcome == "done":
                    for probe in row.cells[1:]:
                        reset(probe)
                self.report()
            if outcome == "failed":
                failed.append(f"{cell.kind} {cell.name}: see {log}")
            blocked = blocked or (cell.kind == "distill" and outcome in ("failed", "blocked"))
            outcomes.append(outcome)
            bar.write(progress_line(cell, outcome, minutes, log))
            bar.update()
        if self.hp["delete_student_features"] and row.group != "reference" and set(outcomes) <= {"done", "skipped"}:
            shutil.rmtree(row.feature_folder, ignore_errors=True)
        return failed

    def run(self):
        """Every row in order; returns the exit status (1 when a cell failed)."""
        started = time.time()
        self.report()
        failed = []
        with tqdm(total=self.n_cells, desc=self.hp["benchmark_name"], unit="cell") as bar:
            for row in self.rows:
                failed += self.run_row(row, bar)
        self.report()
        print(f"{self.hp['benchmark_name']}: {(time.time() - started) / 60:.1f} min; "
              f"report in {self.folder / 'results.md'}")
        if failed:
            print("failed cells:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1 if failed else 0

    def print_plan(self):
        """The dry run: every cell, its state and its command; nothing is written."""
        print(f"pool {self.hours:.3f} h; every student: {self.hp['number_of_epochs']} epochs x "
              f"{self.hp['steps_per_epoch']} steps on {self.hp['segment_seconds']} s segments; "
              f"{self.n_cells} cells in {len(self.rows)} rows; output {self.folder}")
        for row in self.rows:
            budget = "" if row.budget is None else \
                f", budget {100 * row.budget:g} %, seed {row.seed}, {row.epochs} epochs"
            print(f"\n{row.name} ({row.group}{budget})")
            for cell in row.cells:
                print(f"  [{cell.kind} {cell_state(cell)}] {shlex.join(cell.argv)}")


def load_hparams(argv):
    """The benchmark YAML (as given, else relative to the repository root; it may extend another) with its overrides."""
    hparams_file, _, overrides = sb.parse_arguments(argv)
    hparams_file = Path(hparams_file) if Path(hparams_file).exists() else resolve(hparams_file)
    return load_hparams_file(hparams_file, overrides)


def main(argv):
    """Run the benchmark (or, with ``dry_run``, print its plan); returns the exit status."""
    hp = load_hparams(argv)
    benchmark = Benchmark(hp)
    if hp["dry_run"]:
        benchmark.print_plan()
        return 0
    return benchmark.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
