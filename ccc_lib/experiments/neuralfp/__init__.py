"""Chapter 2's experiments around NeuralFP (the method itself — fingerprints, one-out rule, score — is
:mod:`ccc_lib.neuralfp`; the pytorch-ood baselines are :mod:`ccc_lib.baselines`), one module per part:

* :mod:`.settings` — settings and claim bounds per profile, the configurations, the validation OOD set;
* :mod:`.slides` — the slides' tables as printed, beside ours, and their text checked against their numbers;
* :mod:`.protocol` — the validation split, the validation OOD images, the spatial shifts, the pooled activations;
* :mod:`.fitting` — NeuralFP per configuration and seed through the cache, the choice on validation data, where
  each autoencoder bank stopped;
* :mod:`.comparison` — the baselines tuned on validation data, NeuralFP over its seeds and against every baseline;
* :mod:`.studies` — per-layer AUROC, combined against the best layer, the thresholdings' false alarms;
* :mod:`.differ` — the held-out table and "where we differ from the slides";
* :mod:`.chapter`, :mod:`.counterfeits`, :mod:`.verdicts`, :mod:`.figures` — the notebook's runs, chapter 1's
  counterfeits scored, the claims and glued sentences, the figures.

**Fair comparison.** Every detector's free parameters are chosen the same way, by AUROC on held-out
*validation* data: in-distribution images the classifier did not train on where that is cheap (a part of the
test split kept apart from the evaluation images, :func:`split_validation`), else split off the training set
(never used to fit anything), against :data:`VALIDATION_OOD` (crops from the *left* halves of scikit-image's
photographs — the test crops come from the right halves —, Gaussian noise and scikit-learn's upsampled 8×8
digits; none of them is a test OOD set). NeuralFP's configuration (tap set × pooling), ODIN's temperature and
ε and Mahalanobis' ε are picked there; the choice is then evaluated on the complete test sets of the profile,
and NeuralFP is judged against every baseline, none picked by its test AUROC.

Everything but the notebook's glue is re-exported here: ``from ccc_lib.experiments import neuralfp as xp``."""
from . import chapter, counterfeits, figures, verdicts  # noqa: F401
from .chapter import MAHA_LABEL, ODIN_LABEL, VARIANTS, Chapter  # noqa: F401
from .comparison import (BaselineChoice, auroc_over_seeds, best_of_test_verdicts, flag_share, sweep_cached,  # noqa: F401
                         tune_baselines, versus_baseline, versus_baselines, winners_table)
from .differ import held_out, where_we_differ  # noqa: F401
from .fitting import (FittedConfig, bank_key, errors_from_activations, fit_bank_job, fit_config,  # noqa: F401
                      make_detector, stopping_sentence, stopping_table, tune_on_validation)
from .protocol import (PooledActivations, collect_pooled, spatial_shifts, split_validation, taps_by_pool,  # noqa: F401
                       validation_from_test, validation_ood, validation_split)
from .settings import (CLAIM_BOUNDS, PLATEAU, SETTINGS, VALIDATION_OOD, Config, auroc, chapter_models,  # noqa: F401
                       claim_bounds, family, settings, tap_set)
from .slides import (SLIDES_AUROC, SLIDES_BASELINES, SLIDES_EPS_PRINTED, SLIDES_PER_LAYER, SLIDES_SOURCES,  # noqa: F401
                     SLIDES_TEXT, comparable, eps_with_slides, per_layer_with_slides, slides_checks,
                     slides_contradictions_text, slides_eps_table, slides_label, slides_per_layer)
from .studies import (RAW, ZABS, combined_vs_layers, combined_vs_layers_ci, false_alarm_table,  # noqa: F401
                      per_layer_auroc)
