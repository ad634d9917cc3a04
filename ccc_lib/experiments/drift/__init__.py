"""Chapter 4's experiment around the method of :mod:`ccc_lib.drift`: settings and claim bounds per
profile (:mod:`.settings`), the injected drifts and the production models — no-drift controls and
drifted models, each on its own draw of the data (:mod:`.models`) —, the scoring of every (model,
gray-data method, attack) and step 7's decisions (:mod:`.scores`), the decision's false-alarm rate
simulated (:mod:`.decision`), the standard input-drift tests and per-class accuracies beside it
(:mod:`.checks`), and the notebook's sections (:mod:`.chapter`) and claims and glued prose (:mod:`.claims`)."""
from .settings import *      # noqa: F401,F403
from .models import *        # noqa: F401,F403
from .scores import *        # noqa: F401,F403
from .checks import *        # noqa: F401,F403
from .decision import *      # noqa: F401,F403
from .chapter import *       # noqa: F401,F403
from .claims import *        # noqa: F401,F403
from .figures import *       # noqa: F401,F403
