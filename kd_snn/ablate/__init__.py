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
                   FORMAT, MODES, RESERVED, Task, VARIANTS, WORKER, _check_overrides, _datasets, _modes, _seeds,
                   _sets, _variants, base_config, check_teacher_fits, group_name, plan,
                   train_samples)  # noqa: F401
from .records import (_check_existing, _children_cpu, _file_sha256, _last_error, _prepare,
                      _record, _result, _run_budget, _run_record, _teacher_key, budget,
                      read_curve, teacher_info)  # noqa: F401
from .stats import (compare, counted_seeds, paired, paired_analysis, refresh, stats)  # noqa: F401
from .tables import (_budget_text, _curve_text, _fmt, _mean_of, _order, _pct, markdown,
                     paired_cells, plateau, plot)  # noqa: F401
from .runner import (Runner, _cores, _fail_at, _worker, main, train_one)  # noqa: F401
