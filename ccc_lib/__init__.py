"""ccc_lib: the helper package of the book *Is a confident prediction an in-distribution one?*

The core (profiles, data, models, training with the checkpoint cache, the detector interface,
metrics, plots, reports, the runner) serves one module per chapter: ``counterfeits``,
``neuralfp``, ``iocn`` and ``drift``."""
from .cache import NotCached, load_or_train
from .checks import InputError, NotFittedError, check_features, check_fitted, check_images, check_labels
from .claims import Claims, ClaimsFailed
from .data import DatasetUnavailable, TensorData, load_dataset
from .detectors import Detector, evaluate_detector
from .metrics import expected_calibration_error, ood_metrics, reliability_bins
from .models import CNNConfig, PaperCNN, build_classifier
from .profiles import PROFILES, Profile, chapter_settings, get_profile
from .report import glue, paper_vs_ours, save_metrics
from .train import accuracy_of, profile_data, get_classifier, predict_logits, predict_proba, train_classifier
from .utils import get_device, progress, set_seed

__version__ = "0.1.0"
