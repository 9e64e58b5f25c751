"""The paper's ablations (arXiv 2511.06902) as one resumable, fixed-budget experiment.

    kdsnn ablate OUT [--data both] [--seeds 0 1 2] [--variants ...] [--set KEY=VALUE]
                     [--modes spiking reference] [--teacher RUN] [--jobs N]
                     [--config NAME_OR_YAML]

For every data set and seed, one ANN teacher is trained (variant ``teacher``) and shared
by that seed's spiking students, one per distillation variant (see :data:`VARIANTS`) and
student mode (see :data:`MODES`); ``--teacher RUN`` instead gives every student one
teacher trained beforehand (for example on more data than the students see).
Every run is an ordinary run directory::

    OUT/<data>/<variant>/seed<k>/          (config.yaml, metrics.json, teacher|student/...)
    OUT/<data>/<mode>/<variant>/seed<k>/   students of a mode other than ``spiking``
    OUT/ablation.json                      every run: test accuracy, curve, config, timing
    OUT/ablation.md                        mean +- std over seeds per variant, with the budget

Every variant of a data set gets the same budget: the data set's base config (shipped
``ablation_fmnist`` for static data, ``ablation_fmnist_events`` for event data, or
``--config``) with the ``--set`` overrides, then only the variant's loss keys and the seed
changed.  Both result files are rewritten (atomically) whenever a run finishes.

Rerunning the same command skips finished runs and resumes an interrupted one from its
``state.safetensors``; a run directory that holds a different config is refused.
``--jobs N`` runs independent runs in N worker processes (``python -m kd_snn.ablate``),
each with ``max(1, cores // N)`` torch threads; students wait for their teacher.

The package follows the experiment's parts: ``plan`` (variants, modes, checks, the run
directories), ``records`` (what each run leaves), ``runner`` (worker processes, resuming,
result files), ``stats`` (over seeds, paired by seed), ``tables`` (ablation.md/png).
"""
from .plan import (BASE_EVENT, BASE_STATIC, BOTH, DEFAULT_MODES, DEFAULT_SEEDS, FAIL_ENV,
                   FORMAT, MODES, RESERVED, VARIANTS, WORKER, Task, base_config,
                   check_datasets, check_modes, check_overrides, check_seeds,
                   check_teacher_fits, check_variants, group_name, plan, set_args,
                   shard_keys, train_samples)
from .records import (budget, check_existing, read_curve, read_run_record, run_budget,
                      run_result, teacher_info)
from .runner import Runner, main, train_one
from .stats import compare, counted_seeds, paired, paired_analysis, refresh, stats
from .tables import budget_text, curve_text, fmt_stat, markdown, paired_cells, plateau, plot

__all__ = [
    # the plan: variants, student modes, checks, one Task per run directory
    "VARIANTS", "MODES", "DEFAULT_MODES", "DEFAULT_SEEDS", "BOTH", "BASE_STATIC", "BASE_EVENT",
    "RESERVED", "FORMAT", "FAIL_ENV", "WORKER", "Task", "plan", "shard_keys", "base_config",
    "group_name",
    "train_samples", "set_args", "check_datasets", "check_variants", "check_modes",
    "check_seeds", "check_overrides", "check_teacher_fits",
    # what runs leave, and running them
    "teacher_info", "check_existing", "read_curve", "read_run_record", "run_result",
    "run_budget", "budget", "Runner", "train_one", "main",
    # statistics over seeds and the result files
    "stats", "compare", "paired", "paired_analysis", "counted_seeds", "refresh", "markdown",
    "plot", "plateau", "paired_cells", "budget_text", "curve_text", "fmt_stat",
]
