"""Chapter 1's experiments around the method of :mod:`ccc_lib.counterfeits`, one file per part of the
chapter: its settings and claim bounds (:mod:`.settings`), the "where we differ" table with the paper's
wording (:mod:`.differ`), what it measures — confidence, distance to the training data, diversity in
feature and pixel space (:mod:`.measures`) —, the headline paper-vs-ours comparison over seeds
(:mod:`.headline`), the choice of our ε and τ (:mod:`.selection`), the studies — ablation, other
architectures, the residual-CNN budget (:mod:`.studies`) — and the Figure-2 grids and precomputed
sliders (:mod:`.figures`)."""
from .settings import *       # noqa: F401,F403
from .measures import *       # noqa: F401,F403
from .headline import *       # noqa: F401,F403
from .selection import *      # noqa: F401,F403
from .studies import *        # noqa: F401,F403
from .differ import *         # noqa: F401,F403
from .figures import *        # noqa: F401,F403
