"""The paper's ablations as one resumable, fixed-budget experiment: every distillation
variant x seed (x student mode) trained at the same budget, one run directory each, the
result files (OUT/ablation.{json,md,png}) rewritten as runs finish. Rerun to resume."""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

from kd_snn import ablate as A
from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.rundir import RunDir

from .results import AblationResult

__all__ = ["ablate"]


def ablate(out: Union[str, os.PathLike], *, data: Sequence[str] = ("both",),
           seeds: Sequence[int] = A.DEFAULT_SEEDS, variants: Optional[Sequence[str]] = None,
           config: Optional[str] = None, overrides: Sequence[str] = (),
           modes: Optional[Sequence[str]] = None, teacher: Optional[str] = None,
           extra_seeds: Sequence[int] = (), extra_if_std: float = 1.0,
           reference: Optional[str] = None, jobs: int = 1,
           shard: Optional[Tuple[int, int]] = None, merge: bool = False,
           echo: Optional[Callable[[str], None]] = print) -> AblationResult:
    """Train one teacher per seed (or take ``teacher``, a trained ANN run or checkpoint) and
    one student per variant (:data:`kd_snn.ablate.VARIANTS`) and mode, ``jobs`` at a time.

    ``data``: data set names (``both`` = fashion_mnist + fashion_mnist_events);
    ``extra_seeds`` run only for a student mode where some variant's std over ``seeds``
    exceeds ``extra_if_std`` points; ``reference``: a variant every other one is also
    compared with, paired by seed. ``echo`` gets a line per finished run (None: silent).
    A run that did not finish is an error after the result files are written.

    Over machines sharing ``out``: ``shard=(K, N)`` runs only the K-th of N disjoint parts
    of the plan (a seed's teacher with its students, or with ``teacher`` single students,
    dealt out in turn) and writes OUT/shards/K-of-N.json; ``merge=True`` then writes the
    result files a single run writes from the same runs, training nothing (it refuses while
    a run is missing). An extra seed runs in a part invoked after every base run finished:
    run the parts again when the merge asks."""
    say = echo or (lambda s: None)
    if jobs < 1:
        raise KdsnnError(f"--jobs must be >= 1, got {jobs}")
    if shard is not None:
        if merge:
            raise KdsnnError("--shard and --merge exclude each other")
        k, n = shard
        if not 1 <= k <= n:
            raise KdsnnError(f"--shard must be K/N with 1 <= K <= N, got '{k}/{n}'")
    overrides = list(overrides)
    A.check_overrides(overrides)
    datasets = A.check_datasets(list(data))
    seeds = A.check_seeds(list(seeds))
    extra = list(extra_seeds)
    if extra:
        if len(seeds) < 2:
            raise KdsnnError("--extra-seeds needs at least 2 --seeds (their spread decides)")
        if set(extra) & set(seeds):
            raise KdsnnError(f"--extra-seeds {sorted(set(extra) & set(seeds))} already in "
                             f"--seeds")
        A.check_seeds(extra)
        if not extra_if_std >= 0:
            raise KdsnnError(f"--extra-if-std must be >= 0, got {extra_if_std}")
    chosen = A.check_variants(list(variants) if variants else None,
                              external_teacher=teacher is not None)
    if reference is not None and (reference == "teacher" or reference not in chosen):
        raise KdsnnError(f"--reference {reference!r} must be one of the student variants "
                         f"run ({', '.join(v for v in chosen if v != 'teacher')})")
    mode_list = A.check_modes(list(modes) if modes else None)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KdsnnError(f"'{out}' exists and is not a directory")
    teacher_path = info = None
    if teacher is not None:
        teacher_path, info = A.teacher_info(teacher)
        A.check_teacher_fits(info, datasets)
    _check_same_teacher(out, info)
    tasks = A.plan(out, datasets, seeds + extra, chosen, config, overrides, mode_list,
                   external_teacher=teacher_path)
    for task in tasks:
        if task.seed in extra:
            task.status = "conditional"
        A.check_existing(task)
    cmd = ["kdsnn", "ablate", str(out), "--data", *data, "--seeds", *map(str, seeds)]
    if variants:
        cmd += ["--variants", *variants]
    if modes:
        cmd += ["--modes", *mode_list]
    if teacher:
        cmd += ["--teacher", str(teacher)]
    if extra:
        cmd += ["--extra-seeds", *map(str, extra), "--extra-if-std", f"{extra_if_std:g}"]
    if reference:
        cmd += ["--reference", reference]
    if config:
        cmd += ["--config", config]
    for o in overrides:
        cmd += ["--set", o]
    if jobs != 1:
        cmd += ["--jobs", str(jobs)]
    meta = {"command": shlex.join(cmd), "datasets": datasets, "seeds": seeds,
            "variants": chosen, "modes": mode_list, "overrides": overrides,
            "config": config, "teacher": info, "extra_seeds": extra,
            "extra_if_std": extra_if_std if extra else None, "reference": reference}
    runner = A.Runner(out, tasks, jobs, meta, echo=say, extra_if_std=extra_if_std,
                      shard=shard, merge=merge)
    mine = [t for t in tasks if t.status != "elsewhere"]
    skipped = sum(t.status == "done" for t in mine)
    maybe = sum(t.status == "conditional" for t in mine)
    part = f" (part {shard[0]} of {shard[1]})" if shard else " (merge)" if merge else ""
    say(f"ablation{part}: {len(mine) - maybe} runs ({skipped} already finished)"
        + (f" + up to {maybe} for --extra-seeds" if maybe else "")
        + f" in '{out}', {jobs} job(s)")
    # one ablation per output directory; its parts lock only their own share
    lock = (RunDir(out).lock(name=f".kdsnn-ablate-{shard[0]}-of-{shard[1]}.lock", clean=False)
            if shard else RunDir(out).lock())
    with lock:
        runner.run()
    seconds = time.time() - runner.t0
    if shard:
        say(f"part {shard[0]}/{shard[1]}: {out / 'shards' / f'{shard[0]}-of-{shard[1]}.json'} "
            f"({seconds:.0f} s); when every part is done: the same command with --merge")
    else:
        say(f"tables: {out / 'ablation.md'}  ({seconds:.0f} s)")
    bad = [t for t in tasks if t.status not in ("done", "not_needed", "elsewhere")
           and not (shard and t.status == "conditional")]
    if bad:
        raise KdsnnError(f"{len(bad)} run(s) did not finish, first: {bad[0].key} "
                         f"({bad[0].error})")
    files = ((out / "shards" / f"{shard[0]}-of-{shard[1]}.json",) if shard else
             tuple(out / f"ablation.{ext}" for ext in ("json", "md", "png")
                   if (out / f"ablation.{ext}").is_file()))
    return AblationResult(out=out, files=files, finished=sum(t.status == "done" for t in tasks),
                          total=len(tasks) - sum(t.status == "not_needed" for t in tasks),
                          seconds=seconds)


def _check_same_teacher(out: Path, teacher) -> None:
    """Finished students are reused on a rerun: they must come from the same teacher
    (``teacher``: its description, or None for one teacher per seed)."""
    old = out / "ablation.json"
    if not old.is_file():
        return
    record = kio.read_json_object(old, "ablation record")
    if not any(r.get("variant") != "teacher" and r.get("status") == "done"
               for r in record.get("runs", []) if isinstance(r, dict)):
        return
    before = (record.get("teacher") or {}).get("sha256")
    now = None if teacher is None else teacher["sha256"]
    if before != now:
        def name(sha):
            return "one teacher per seed" if sha is None else f"teacher sha256 {sha[:12]}..."
        raise KdsnnError(f"'{out}' holds students of another teacher ({name(before)}; this "
                         f"command: {name(now)}): use another OUT directory")
