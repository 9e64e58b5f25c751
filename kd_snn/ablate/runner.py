"""Running the plan: worker processes (``python -m kd_snn.ablate _worker``), resuming,
teachers before their students, the extra-seed rule, result files after every run."""
from __future__ import annotations

import contextlib
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import KdsnnError
from ..io import write_bytes, write_json, write_text
from ..rundir import RunDir
from .plan import FAIL_ENV, FORMAT, MODES, Task, VARIANTS, WORKER, shard_keys
from .records import children_cpu, last_error, prepare_run, save_record, run_result, run_budget, budget
from .stats import compare, refresh, stats
from .tables import fmt_stat, markdown, plot


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fail_at() -> Optional[int]:
    value = os.environ.get(FAIL_ENV)
    return int(value) if value else None


def train_one(run_path, stage: str, teacher_path=None, threads: Optional[int] = None) -> dict:
    """Train (or resume) one stage of a prepared run directory (its config.yaml)."""
    import torch
    from ..trainer import Stage

    run = RunDir(run_path)
    cfg = run.load_config()
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with run.lock():
            resume = run.state_path(stage).is_file()
            final = Stage(run, cfg, stage, teacher_path=teacher_path, progress=False,
                          fail_at_step=_fail_at()).fit(resume=resume)
    finally:
        torch.set_num_threads(previous)
    return final


class Runner:
    """Runs the plan, ``jobs`` at a time, and rewrites the result files after each run."""

    def __init__(self, out: Path, tasks: list[Task], jobs: int, meta: dict,
                 echo=print, extra_if_std: Optional[float] = None,
                 shard: Optional[tuple] = None, merge: bool = False):
        self.out, self.tasks, self.jobs, self.meta, self.echo = out, tasks, jobs, meta, echo
        self.extra_if_std = extra_if_std
        self.threads = max(1, _cores() // jobs)
        self.t0 = time.time()
        self.ran = 0
        self.shard, self.merge = shard, merge
        if shard is not None:  # the other parts' unfinished runs are run elsewhere
            mine = shard_keys(tasks, *shard)
            for t in tasks:
                if t.key not in mine and t.status != "done":
                    t.status = "elsewhere"

    # scheduling ------------------------------------------------------------------------
    def base_spread(self, group: str) -> Optional[float]:
        """The largest std (pp) over the group's variants on its base seeds, once every
        base student of the group has finished (None before)."""
        base = [t for t in self.tasks if t.group == group and t.variant != "teacher"
                and t.seed in self.meta["seeds"]]
        if any(t.status in ("pending", "running", "elsewhere") for t in base):
            return None
        spreads = []
        for v in {t.variant for t in base}:
            s = stats([t.result["test_accuracy"] for t in base
                       if t.variant == v and t.status == "done"])
            spreads.append(100 * s["std"] if s["std"] is not None else 0.0)
        return max(spreads, default=0.0)

    def _needs_more(self, group: str) -> Optional[bool]:
        if self.extra_if_std is None or not self.meta.get("extra_seeds"):
            return None
        spread = self.base_spread(group)
        return None if spread is None else spread > self.extra_if_std

    def _decide(self, task: Task) -> None:
        """An extra seed runs only for a group whose base seeds spread more than
        ``extra_if_std`` points (its teacher when any group of its data needs it)."""
        groups = [task.group] if task.variant != "teacher" else \
            list(dict.fromkeys(t.group for t in self.tasks
                               if t.data == task.data and t.variant != "teacher"))
        verdicts = [self._needs_more(g) for g in groups]
        if any(v is True for v in verdicts):
            task.status = "pending"
        elif all(v is False for v in verdicts):  # also: no student group to serve
            task.status = "not_needed"

    def _ready(self) -> Optional[Task]:
        for task in self.tasks:
            if task.status == "conditional":
                self._decide(task)
            if task.status != "pending":
                continue
            if task.teacher is None or task.teacher.status == "done":
                return task
            if task.teacher.status in ("failed", "blocked"):
                task.status, task.error = "blocked", f"teacher {task.teacher.key} failed"
        return None

    def run(self) -> dict:
        if self.merge:  # combine what the parts ran: nothing trains here
            self._ready()  # decides the extra seeds the spread rule asks for
            todo = [t.key for t in self.tasks if t.status in ("pending", "running")]
            if todo:
                raise KdsnnError(f"{len(todo)} run(s) not finished, first: {todo[0]} (run "
                                 "every --shard K/N again: an extra seed the spread rule asks "
                                 "for runs once all base seeds are done)")
            self.write()
            return self.summary_all()
        self.write()
        if self.jobs == 1:
            self._run_inline()
        else:
            self._run_processes()
        self.write()
        return self.summary_all()

    def _run_inline(self) -> None:
        while (task := self._ready()) is not None:
            prepare_run(task)
            task.status = "running"
            t, cpu = time.time(), time.process_time()
            log = task.path / "ablate.log"
            try:
                with open(log, "a") as fh, contextlib.redirect_stdout(fh):
                    train_one(task.path, task.stage, task.teacher_path, self.threads)
            except KdsnnError as exc:
                self._finish(task, time.time() - t, time.process_time() - cpu, error=str(exc))
                continue
            self._finish(task, time.time() - t, time.process_time() - cpu)

    def _run_processes(self) -> None:
        running: dict[Task, tuple[subprocess.Popen, float, object]] = {}
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads),
                   MKL_NUM_THREADS=str(self.threads))
        try:
            while True:
                while len(running) < self.jobs and (task := self._ready()) is not None:
                    prepare_run(task)
                    task.status = "running"
                    fh = open(task.path / "ablate.log", "a")
                    cmd = [sys.executable, "-m", "kd_snn.ablate", WORKER, str(task.path),
                           task.stage, str(task.teacher_path or "-"), str(self.threads)]
                    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                    running[task] = (proc, time.time(), fh)
                if not running:
                    break
                time.sleep(0.2)
                for task, (proc, t, fh) in list(running.items()):
                    cpu = children_cpu()  # grows only when a child is reaped (by poll)
                    if proc.poll() is None:
                        continue
                    cpu = children_cpu() - cpu
                    fh.close()
                    del running[task]
                    error = None
                    if proc.returncode != 0:
                        error = last_error(task.path / "ablate.log", proc.returncode)
                    self._finish(task, time.time() - t, cpu, error=error)
        finally:
            for task, (proc, _, fh) in running.items():  # interrupted: stop our workers
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                fh.close()

    def _finish(self, task: Task, wall: float, cpu: float, error: Optional[str] = None) -> None:
        save_record(task, wall, cpu)
        if error is not None:
            task.status, task.error = "failed", error
            if task.variant == "teacher":  # same config for every run: stop at once
                self.write()
                raise KdsnnError(f"{task.key} failed: {error}")
        else:
            task.status = "done"
            task.result = run_result(task)
        self.ran += 1
        self.write()
        self.echo(self.progress_line(task, wall))

    # results ---------------------------------------------------------------------------
    def _members(self, group: str, variant: str) -> list[Task]:
        """A group's runs of a variant; a shared teacher belongs to every group of its data."""
        if variant == "teacher":
            data = group.split("/")[0]
            return [t for t in self.tasks if t.variant == "teacher" and t.data == data]
        members = [t for t in self.tasks if t.group == group and t.variant == variant]
        if self._needs_more(group) is False:  # extra seeds finished earlier do not count
            members = [t for t in members if t.seed in self.meta["seeds"]]
        return members

    def summary(self, group: str) -> dict:
        out = {}
        for v in VARIANTS:
            members = self._members(group, v)
            if members:
                done = [t for t in members if t.status == "done"]
                out[v] = stats([t.result["test_accuracy"] for t in done])
                out[v]["best"] = stats([t.result.get("best_test_accuracy") for t in done])
        return compare(out)

    def groups(self) -> list[str]:
        """One table per data set and student mode; a data set with only its teachers
        (``--variants teacher``) gets its own."""
        out = list(dict.fromkeys(t.group for t in self.tasks if t.variant != "teacher"))
        for t in self.tasks:
            if t.variant == "teacher" and not any(g.split("/")[0] == t.data for g in out):
                out.append(t.group)
        return out

    def summary_all(self) -> dict:
        return {g: self.summary(g) for g in self.groups()}

    def progress_line(self, task: Task, wall: float) -> str:
        planned = [t for t in self.tasks if t.status not in ("not_needed", "elsewhere")]
        done = sum(t.status == "done" for t in planned)
        head = f"[{done}/{len(planned)}] {task.key}"
        if task.status == "done":
            head += (f": {100 * task.result['test_accuracy']:.2f}% in {wall:.0f} s"
                     + (" (resumed)" if task.resumed else ""))
        else:
            head += f": FAILED ({task.error})"
        cells = [f"{v} {fmt_stat(s, short=True)}" for v, s in self.summary(task.group).items()
                 if s["n"]]
        return head + " | " + ", ".join(cells)

    def write(self) -> None:
        if self.shard is not None:
            self._write_shard()
            return
        runs = []
        for t in self.tasks:
            if t.status in ("done", "failed", "blocked"):
                entry = {"data": t.data, "mode": t.mode, "group": t.group,
                         "variant": t.variant, "seed": t.seed,
                         "status": t.status, "run_dir": str(t.path),
                         "budget": run_budget(t), "config": t.cfg.to_dict()}
                if t.status == "done":
                    entry.update(t.result)
                else:
                    entry["error"] = t.error
                runs.append(entry)
        per_group = {}
        for g in self.groups():
            members = [t for t in self.tasks if t.group == g]
            first = next((t for t in members if t.variant != "teacher"), members[0])
            cfg, mode = first.cfg, first.mode
            per_group[g] = {"data": cfg.data.name, "mode": mode,
                            "mode_described": MODES[mode][0], "mode_sets": MODES[mode][1],
                            "budget": budget(cfg, self.meta.get("teacher")),
                            "model": cfg.student.model,
                            "model_kwargs": dict(cfg.student.model_kwargs),
                            "width": cfg.student.width, "time_steps": cfg.data.time_steps,
                            "encoding": cfg.data.encoding, "summary": self.summary(g),
                            "curves": self.curves(g)}
            per_group[g]["missing"] = self.missing(g)
            if self.meta.get("extra_seeds"):
                spread = self.base_spread(g)
                per_group[g]["extra_seeds"] = {
                    "base_spread_pp": None if spread is None else round(spread, 3),
                    "threshold_pp": self.extra_if_std,
                    "ran": None if spread is None else spread > self.extra_if_std}
        planned = [t for t in self.tasks if t.status != "not_needed"]
        obj = {"format": FORMAT, **self.meta, "variants_described": {
                   v: VARIANTS[v][0] for v in self.meta["variants"]},
               "complete": all(t.status == "done" for t in planned),
               "finished_runs": sum(t.status == "done" for t in planned),
               "total_runs": len(planned),
               "elapsed_seconds_this_invocation": round(time.time() - self.t0, 1),
               "jobs": self.jobs, "threads_per_job": self.threads,
               "cpu_seconds_total": round(sum(r.get("cpu_seconds") or 0 for r in runs), 1),
               "datasets_detail": per_group, "runs": runs}
        refresh(obj)
        write_json(self.out / "ablation.json", obj)
        write_text(self.out / "ablation.md", markdown(obj))
        write_bytes(self.out / "ablation.png", plot(obj))

    def _write_shard(self) -> None:
        """A part writes only OUT/shards/K-of-N.json (its runs' states): the result files
        are the merge's, so parts sharing OUT never write the same file."""
        k, n = self.shard
        mine = [t for t in self.tasks if t.status != "elsewhere"]
        write_json(self.out / "shards" / f"{k}-of-{n}.json", {
            "format": FORMAT, "shard": k, "shards": n, "command": self.meta["command"],
            "runs": {t.key: t.status for t in mine},
            "elapsed_seconds_this_invocation": round(time.time() - self.t0, 1)})

    def missing(self, group: str) -> list:
        """The group's student runs not finished yet ('samd_nld seed 2'; an extra seed the
        spread rule has not decided on yet says so)."""
        return [f"{t.variant} seed {t.seed}" + (" (extra, if the spread asks)"
                                                if t.status == "conditional" else "")
                for t in self.tasks if t.group == group and t.variant != "teacher"
                and t.status in ("pending", "running", "conditional")]

    def curves(self, group: str) -> dict:
        """Mean test accuracy after every epoch, per variant, over the finished seeds."""
        out = {}
        for v in VARIANTS:
            rows = [t.result.get("curve") or [] for t in self._members(group, v)
                    if t.status == "done"]
            rows = [r for r in rows if r]
            if rows and len({len(r) for r in rows}) == 1:
                out[v] = [None if None in col else round(statistics.fmean(col), 6)
                          for col in zip(*rows)]
        return out


def _worker(argv: list[str]) -> int:
    run_path, stage, teacher, threads = argv
    logging.getLogger("kdsnn").setLevel(logging.INFO)
    try:
        train_one(run_path, stage, None if teacher == "-" else teacher, int(threads))
    except KdsnnError as exc:
        print(f"kdsnn: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m kd_snn.ablate _worker ...``: one run in a worker process (the command
    itself is ``kdsnn ablate``, in the app layer ``kdsnn.ablation``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != [WORKER]:
        print("kdsnn: error: use 'kdsnn ablate' (this module only runs worker processes)",
              file=sys.stderr)
        return 2
    return _worker(argv[1:])
