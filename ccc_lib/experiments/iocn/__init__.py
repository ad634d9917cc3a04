"""Chapter 3's experiments around the IOCN (the method itself is :mod:`ccc_lib.iocn`), one module per part of
the paper:

* :mod:`.settings` — settings per profile, the claims' bounds, the paper's numbers and words;
* :mod:`.inputs` — the features and the one-vs-rest split in the two input settings (the paper's hypersphere
  + noise, our z-scored variant);
* :mod:`.table1` — Table 1 (every row, one block per feature kind and input setting), Table 2, Figure 3, the
  decision rules, the budget curves, chapter 1's counterfeits;
* :mod:`.deep_baselines` — deepOD's rows: budget rule, training evidence, GOAD's score against the norm;
* :mod:`.verdicts` — IOCN against FLOW, against every baseline, and "matches" as equivalence;
* :mod:`.appendix` — the 2-D sets, the 1-D example, the hole, the stop-gradient ablation;
* :mod:`.study` — the study's results file and the setting it picks;
* :mod:`.differ` — "where we differ from the paper";
* :mod:`.chapter`, :mod:`.closing` — the notebook's glue: its runs, claims and sentences.

Everything is re-exported here: ``from ccc_lib.experiments import iocn as E; E.one_vs_rest(...)``."""
from . import chapter, closing, deep_baselines, inputs, table1, verdicts  # noqa: F401
from ...baselines import plateau  # noqa: F401
from .appendix import (AblationRun, HoleResult, Monotone1D, OneDRun, TOY_SETS, decision_boundary, fit_toy,  # noqa: F401
                       hole_study, plot_1d, plot_toy, stopgrad_ablation, toy_1d, toy_2d, train_1d)
from .deep_baselines import (deepod_budget, deepod_classes, deepod_default, deepod_scores, deepod_training_table,  # noqa: F401
                             goad_table, norm_evidence, plot_deepod_curves, settle_monitor)
from .differ import where_we_differ  # noqa: F401
from .inputs import (FEATURE_KINDS, Split, SphereMap, calibration_mask, encode_images, fashion_features,  # noqa: F401
                     one_class_split, resnet18_encoder)
from .settings import (CLAIM_BOUNDS, FEATURE_DESCRIPTIONS, INPUT_LABELS, PAPER_QUOTES, PAPER_TABLE1_MEAN,  # noqa: F401
                       SETTINGS, block_name, blocks, claim_bounds, settings)
from .study import StudyChoice, read_study, study_choice, study_file, study_overrides, study_table, study_text  # noqa: F401
from .closing import counterfeit_auroc_ci, score_counterfeits  # noqa: F401
from .table1 import (GOAD_PATCHED, NORM_ROW, LazyBaseline, OneVsRest, auroc_table, budget_table, class_job,  # noqa: F401
                     confusion_auroc, decision_rates, default_methods, extreme_examples, one_vs_rest,
                     reconstruction_error, share_inside_cube, time_to_reach)
from .verdicts import (baselines_of, class_mean_diff, classes_of, diff_over_seeds, match_interval, plot_forest,  # noqa: F401
                       versus_baselines)
