"""``eval_every``: the test split is evaluated every N epochs and after the last; the
ablation's curves, plateau and tables read runs with epochs left out."""
import csv

from kd_snn.ablate import markdown
from kd_snn.ablate.records import read_curve
from kd_snn.ablate.tables import plateau
from kd_snn.config import load_config
from kd_snn.trainer import evaluated_after
from kdsnn.cli import main


def test_evaluated_epochs():
    tc = load_config("digits", ["teacher.epochs=7", "teacher.eval_every=3"]).teacher
    assert [e + 1 for e in range(7) if evaluated_after(e, tc)] == [3, 6, 7]


def test_teacher_run_skips_evaluations(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["teacher", "--config", "digits", str(run), "--set", "teacher.epochs=3",
                 "--set", "teacher.eval_every=2", "--set", "teacher.width=1",
                 "--no-progress"]) == 0
    rows = list(csv.DictReader(open(run / "teacher" / "metrics.csv")))
    assert [r["test_acc"] != "" for r in rows] == [False, True, True]
    curve = read_curve(run / "teacher" / "metrics.csv")
    assert curve[0] is None and curve[1] is not None and curve[2] is not None
    out = capsys.readouterr()
    assert "test_acc -" in out.out + out.err


def test_plateau_with_epochs_left_out():
    curve = [None, None, None, None, 0.70, None, None, None, None, 0.78, None, None, None,
             None, 0.80, None, None, None, None, 0.805]
    p = plateau(curve)
    assert p["epochs"] == 10 and abs(p["gain"] - 0.025) < 1e-12 and p["best_epoch"] == 20
    assert plateau([0.1, 0.2, 0.3, 0.4])["epochs"] == 1  # every epoch: as before


def test_bad_eval_every_is_refused(tmp_path, capsys):
    assert main(["teacher", "--config", "digits", str(tmp_path / "r"),
                 "--set", "teacher.eval_every=0"]) == 2
    assert "eval_every" in capsys.readouterr().err
