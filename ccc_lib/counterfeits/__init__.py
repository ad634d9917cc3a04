"""Chapter 1: Confidently Classified Counterfeits (Suhail & Sethi, arXiv 2503.20187) — the method.

A *vector-matrix conditioned generator* G is trained against a frozen classifier f (evaluation
mode, no parameter gradients) so that its images are classified as the intended label. Two modes:

* ``"inversion"`` (network inversion, arXiv 2407.18002): the condition vector is the softmax of a
  normal draw (soft conditioning), the label is its argmax, the KL target is the soft vector;
* ``"counterfeit"``: one-hot condition vector and matrix, and the KL target is the one-hot label,
  which drives the classifier's confidence to 1.

The paper's loss (§3.3) is

    L = α·KL(t ‖ softmax f(G(z, c))) + β·CE(f(G(z, c)), y) + γ·Cos(F) + δ·Ortho(F),

F the batch's penultimate features of f. :data:`VARIANTS` names the two generators the book uses:
``"paper"`` is exactly that loss (ε = 0); ``"ours"`` adds one term, ε·Div, a within-class hinge on
the *feature-space* distance (see :func:`loss_terms`), against the collapse to one template per
class; its ε and τ are chosen per classifier on its generated samples alone (:data:`SELECTION`,
:func:`ours_choice`; training images only set the scale), never on the test set.

Three files, read in this order:

* :mod:`.generator` — what the paper defines: the generator, its conditions, the classifier's
  features, the loss;
* :mod:`.training` — training against the frozen classifier until the chapter's plateau test passes,
  and sampling;
* :mod:`.trained` — the settings per profile and the public entry points chapters 2-4 call:
  :func:`get_generator` (the trained generator for a classifier, from the checkpoint cache or trained
  now; ``cache_only=True`` never trains), :func:`sample` and :func:`confident_counterfeits` (the cached
  generator's samples at confidence ≥ 0.99).

Measurement, the "where we differ" table (with the paper's wording), the claims' bounds and our goal,
the other architectures, ablations, grids and the precomputed sliders are experiment code:
:mod:`ccc_lib.experiments.counterfeits`."""
from .generator import *      # noqa: F401,F403
from .training import *       # noqa: F401,F403
from .trained import *        # noqa: F401,F403
