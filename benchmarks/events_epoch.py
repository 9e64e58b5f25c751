"""Where an event-ablation epoch goes (issue 32): data framing, training, test evaluation.

    nice -n 10 .venv/bin/python benchmarks/events_epoch.py [--save]

In the event ablation's own settings (``ablation_fmnist_events_converged``: `cnn` w1, T = 10,
batch 32, the first 5,000 training recordings, the full 10,000-recording test split; one
thread, as each ``--jobs 2`` worker gets), it times

* framing: one pass of tonic's ``ToFrame`` over the 5,000 training recordings, and the same
  pass again from the in-memory frame memo (``EventVersion(memo_frames=True)``);
* one teacher epoch (plain CE) and one student epoch (SAMD + NLD) of training;
* one evaluation of the student on the whole test split, framed and from the memo.

From these it projects one student's cost at 20 epochs with a test evaluation every epoch and
framing every pass (the budget before issue 32) and with the memo and ``eval_every = 5``.
``--save`` writes benchmarks/results/events_epoch.{json,md}. Timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save", action="store_true", help="write benchmarks/results/events_epoch.*")
    args = p.parse_args()

    import torch
    torch.set_num_threads(1)
    from kd_snn.config import load_config
    from kd_snn.rundir import RunDir
    from kd_snn.run import evaluate, open_dataset
    from kd_snn.trainer import Stage

    cfg = load_config("ablation_fmnist_events_converged")
    train, test = open_dataset(cfg, "train"), open_dataset(cfg, "test")
    n = len(train)
    train.memo_frames = False
    t_frame_cold, _ = _timed(lambda: [train[i] for i in range(n)])
    train.memo_frames = True
    _timed(lambda: [train[i] for i in range(n)])  # fills the memo
    t_frame_memo, _ = _timed(lambda: [train[i] for i in range(n)])

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        for stage in ("teacher", "student"):
            c = load_config("ablation_fmnist_events_converged", [f"{stage}.epochs=1"])
            teacher = run.model_path("teacher") if stage == "student" else None
            st = Stage(run, c, stage, teacher_path=teacher, device="cpu", progress=False)
            st.prepare()
            st.train_set, st.test_set = train, test  # the same memo for every pass
            t_fit, final = _timed(st.fit)
            rows[stage] = t_fit
        model = st.model
        test.memo_frames = False
        t_eval_cold, _ = _timed(lambda: evaluate(model, test, cfg, "student", torch.device("cpu")))
        test.memo_frames = True
        evaluate(model, test, cfg, "student", torch.device("cpu"))
        t_eval_memo, _ = _timed(lambda: evaluate(model, test, cfg, "student",
                                                  torch.device("cpu")))
    # each fit ran one epoch from the memo and one evaluation of the test split
    train_teacher = rows["teacher"] - t_eval_memo  # the teacher's eval is cheaper; bound
    train_student = rows["student"] - t_eval_memo
    epochs, every = 20, 5
    before = epochs * (train_student + t_frame_cold - t_frame_memo + t_eval_cold)
    after = epochs * train_student + (epochs // every) * t_eval_memo + t_frame_cold
    res = {"machine": platform.processor() or platform.machine(), "threads": 1,
           "train_recordings": n, "test_recordings": len(test),
           "framing_train_pass_s": round(t_frame_cold, 2),
           "memo_train_pass_s": round(t_frame_memo, 2),
           "teacher_epoch_fit_s": round(rows["teacher"], 2),
           "student_epoch_fit_s": round(rows["student"], 2),
           "teacher_epoch_train_s_approx": round(train_teacher, 2),
           "student_epoch_train_s": round(train_student, 2),
           "student_eval_framed_s": round(t_eval_cold, 2),
           "student_eval_memo_s": round(t_eval_memo, 2),
           "student_20_epochs_before_s": round(before, 1),
           "student_20_epochs_after_s": round(after, 1),
           "ratio": round(before / after, 2)}
    md = ["# Event ablation: where one epoch goes (benchmarks/events_epoch.py)", "",
          f"Settings: `ablation_fmnist_events_converged` (cnn w1, T = 10, batch 32), {n} training "
          f"and {len(test)} test recordings, 1 thread; machine: {res['machine']} "
          "(timings depend on it).", "",
          "| piece | seconds |", "|---|---:|",
          f"| framing, {n} training recordings (tonic ToFrame) | {t_frame_cold:.1f} |",
          f"| the same pass from the frame memo | {t_frame_memo:.1f} |",
          f"| teacher: one epoch + one test evaluation (memo) | {rows['teacher']:.1f} |",
          f"| student (SAMD + NLD): one epoch + one test evaluation (memo) "
          f"| {rows['student']:.1f} |",
          f"| student: test evaluation, framed | {t_eval_cold:.1f} |",
          f"| student: test evaluation, from the memo | {t_eval_memo:.1f} |",
          f"| **student, 20 epochs, evaluated every epoch, framed every pass** | {before:.0f} |",
          f"| **student, 20 epochs, memo, evaluated every {every} epochs** | {after:.0f} |", "",
          f"Projected saving per student: {res['ratio']:.2f}x."]
    print("\n".join(md))
    if args.save:
        (HERE / "results" / "events_epoch.json").write_text(json.dumps(res, indent=1) + "\n")
        (HERE / "results" / "events_epoch.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
