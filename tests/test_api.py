"""The Python API is the workflow; the CLI only parses, calls it and prints (issue 28)."""
import inspect

import pytest

import kdsnn
from kdsnn import cli
from kdsnn.cli import main

STEPS = ["train_teacher", "distill", "evaluate", "quantize", "export", "parity",
         "parity_shard", "merge_parity", "report", "import_nir", "ablate"]


def test_every_step_is_public_documented_and_keyword_only():
    assert set(STEPS) <= set(kdsnn.__all__)
    for name in kdsnn.__all__:
        assert hasattr(kdsnn, name), name
    for name in STEPS:
        fn = getattr(kdsnn, name)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, name
        params = list(inspect.signature(fn).parameters.values())
        positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert positional[0] in ("run", "out"), name
        assert len(positional) <= {"import_nir": 2, "parity_shard": 3}.get(name, 1), name
        assert all(p.kind == p.KEYWORD_ONLY for p in params[len(positional):]), name


@pytest.mark.parametrize("argv,module,func,expect", [
    (["teacher", "R", "--config", "digits", "--set", "teacher.epochs=1"], "training",
     "train_teacher", {"config": "digits", "overrides": ["teacher.epochs=1"]}),
    (["export", "R", "--target", "nir", "--calib", "8"], "deploy", "export",
     {"targets": ["nir"], "calib": 8}),
    (["parity", "R", "--samples", "4", "--stock-models"], "verify", "parity",
     {"samples": 4, "conv_model": "lava"}),
    (["report", "R", "--source", "both", "--html"], "reporting", "report",
     {"source": "both", "html": True}),
])
def test_the_cli_calls_the_api(monkeypatch, argv, module, func, expect):
    import importlib
    seen = {}

    def fake(run, **kw):
        seen.update(kw, run=run)
        raise kdsnn.KdsnnError("stop here")

    monkeypatch.setattr(importlib.import_module(f"kdsnn.{module}"), func, fake)
    assert main(argv) == 2
    assert seen["run"] == "R" and all(seen[k] == v for k, v in expect.items()), seen


def test_version_and_bare_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"kdsnn {kdsnn.__version__}"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kdsnn") and "distill" in out and "report" in out


def test_options_are_not_prefix_matched(capsys):
    assert main(["report", "runs/x", "--htm"]) == 2
    assert "unrecognized arguments: --htm" in capsys.readouterr().err


def test_every_subcommand_has_a_description_and_its_own_example():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    seen = set()
    for name, parser in sub.choices.items():
        assert parser.description, name
        assert parser.epilog and f"kdsnn {name}" in parser.epilog, name
        example = parser.epilog.split("example:")[-1]
        assert example not in seen, name
        seen.add(example)


def test_eval_on_a_missing_run_names_no_flag_eval_rejects(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml" in err and "--config" not in err


def test_options_are_checked_before_any_work(tmp_path, capsys):
    run = tmp_path / "empty"  # not even a run: the option is refused first
    assert main(["report", str(run), "--profile", "loihi2"]) == 2
    assert "loihi2" in capsys.readouterr().err
    assert main(["export", str(run), "--target", "nir", "--device", "cuda:7"]) == 2
    assert "cuda" in capsys.readouterr().err.lower()
    with pytest.raises(kdsnn.KdsnnError, match="source"):
        kdsnn.report(run, source="loihi")
    assert not run.exists()
