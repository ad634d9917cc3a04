"""The "where we differ" table: each element of the method, the paper's wording (quoted) or "not
stated", ours at every profile, and which is which — generated from the settings."""
from __future__ import annotations

import pandas as pd

from ... import counterfeits as cf
from ...models import CNNConfig
from ...profiles import get_profile
from .settings import arch_settings
from .studies import ABLATION

__all__ = ["PAPER", "DIFFER_ELEMENTS", "differ_rows", "differ_table"]


#: what the paper states about each element of the method, quoted (arXiv 2503.20187; None: not
#: stated). The values the book uses where the paper is silent are ours: an unattributed public
#: implementation uses several of them (n_z = 100, widths 64/128/256, Dropout2d(0.1) after the matrix,
#: Adam 5e-4), but its repository could not be identified, so nothing here is attributed to it.
PAPER = {
    "datasets": "carried out by modifying the inversion technique on the MNIST [2], FashionMNIST [14], SVHN "
                "and CIFAR-10 [6] datasets",
    "classifier": "a simple multi-layer convolutional neural network consisting of convolutional layers, dropout "
                  "layers, batch normalization, and leaky-relu activation followed by fully connected layers and "
                  "softmax",
    "classifier_mode": "then held in evaluation mode for the purpose of inversion",
    "nz": None,
    "condition_entry": "the class labels are encoded into random softmaxed vectors concatenated with the latent "
                       "vector",
    "condition_counterfeit": "we modify the conditioning mechanism in inversion by shifting from soft vectors to "
                             "one-hot vectors and matrices",
    "before_matrix": "followed by multiple layers of transposed convolutions, batch normalization [3] and dropout "
                     "layers [10]. Once the vectors are upsampled to N × N spatial dimensions",
    "dropout_before_matrix": "multiple layers of transposed convolutions, batch normalization [3] and dropout "
                             "layers [10]",
    "hot_matrix": "all elements in a specific row or column are set to 1, corresponding to the encoded label",
    "matrix_entry": "Once the vectors are upsampled to N × N spatial dimensions ... they are concatenated with a "
                    "conditioning matrix",
    "after_matrix": "for subsequent generation upto the required image size of 28×28 or 32×32",
    "many_classes": None,
    "output": None,
    "dropout_rate": "apply heavy dropout during the generation process",
    "sample_dropout": "The use of dropout during the generation process ensures that the samples vary significantly",
    "loss": "L_Inv = α·L_KL + β·L_CE + γ·L_Cosine + δ·L_Ortho",
    "weights": None,
    "kl_target": "applying Kullback-Leibler divergence (KLD) between the one-hot vectors and the classifier's "
                 "output distribution",
    "feature_layer": "we minimize cosine similarity between features of the generated images; ... penalizing "
                     "deviations in the Gram matrix of the features",
    "optimizer": None,
    "lr": None,
    "steps_batch": None,
    "stop": None,
    "div": None,
    "selection": None,
    "seeds": None,
    "studies": None,
}


#: every element of the method the "where we differ" table covers: key → readable name
DIFFER_ELEMENTS = {
    "datasets": "datasets", "classifier": "classifier under attack", "classifier_mode": "classifier during inversion",
    "nz": "latent size n_z", "condition_entry": "how the condition vector enters",
    "condition_counterfeit": "condition in counterfeit mode", "before_matrix": "layers before the matrix",
    "dropout_before_matrix": "dropout before the matrix", "hot_matrix": "hot conditioning matrix",
    "matrix_entry": "where the matrix enters", "after_matrix": "layers after the matrix",
    "many_classes": "N > H/2 (more classes than half the image side)", "output": "output layer",
    "dropout_rate": "dropout rate", "sample_dropout": "dropout when sampling", "loss": "loss",
    "weights": "loss weights α, β, γ, δ", "kl_target": "KL target", "feature_layer": "features of Cos and Ortho",
    "optimizer": "optimiser", "lr": "learning rate", "steps_batch": "training steps, batch",
    "stop": "when training stops", "div": "ε·Div (ours)", "selection": "ε, τ selection budget (ours)",
    "seeds": "generator seeds", "studies": "size of the studies (ablation, other architectures, budget grid, sliders)",
}


_WHICH = {"same": "same as the paper", "differs": "differs from the paper", "silent": "paper silent: ours",
          "ours": "ours only"}


_PROFILES = ("smoke", "default", "full", "full_dry")


def _bridge(n: int, h: int) -> str:
    """The layer that takes the N×N map to H/2, read off the generator the code builds."""
    g = cf.VectorMatrixGenerator(num_classes=n, image_size=h, nz=2, channels=(2,))
    m = g.up[0]
    return f"{type(m).__name__}, kernel {m.kernel_size[0]}"


def _ours(key: str, P, s: dict, sel: dict) -> tuple:
    """This profile's value of one element, and which is which (a key of :data:`_WHICH`)."""
    ch = "/".join(map(str, s["channels"]))
    w = s["channels"][-1]
    ds = ", ".join(P.classifier_datasets)
    if key == "datasets":
        paper = {"mnist", "fashion_mnist", "svhn", "cifar10"}
        same = set(P.classifier_datasets) == paper and not P.dry_run
        note = " (generated files in their formats)" if P.dry_run else ""
        return ds + note, "same" if same else "differs"
    if key == "classifier":
        c = CNNConfig()
        arch = (f"3 × (Conv3×3 {'/'.join(map(str, c.widths))} + BatchNorm + LeakyReLU({c.negative_slope}) + MaxPool2 + "
                f"Dropout2d({c.conv_dropout})), Linear {c.fc} + BatchNorm + LeakyReLU + Dropout({c.fc_dropout}), Linear N")
        return (arch + f"; trained {', '.join(f'{d}: {P.epochs_for(d)} epochs' for d in P.classifier_datasets)}",
                "silent")
    if key == "classifier_mode":
        return "eval mode, parameters frozen", "same"
    if key == "nz":
        return str(s["nz"]), "silent"
    if key == "condition_entry":
        return f"a learned linear embedding (N → {s['nz']}) of the condition vector, then concatenated with z", "differs"
    if key == "condition_counterfeit":
        return "one-hot vector and matrix", "same"
    if key == "before_matrix":
        return f"transposed convs (kernel 4, stride 1; widths {ch}) + BatchNorm + ReLU: 1 → 4 → 7 → 10 = N", "silent"
    if key == "dropout_before_matrix":
        return "none", "differs"
    if key == "hot_matrix":
        return "the label's row and column set to 1", "differs"
    if key == "matrix_entry":
        return "one extra channel at N×N", "same"
    if key == "after_matrix":
        return (f"transposed conv to H/2 (width {max(1, w // 2)}), stride-2 transposed conv to H (width {max(1, w // 4)}), "
                f"each + BatchNorm + ReLU + Dropout2d; 3×3 transposed conv to the image channels", "silent")
    if key == "many_classes":
        used = "at this profile: chapter 4's EMNIST-47 classifier" if P.scale == "full" else "not used at this profile"
        return f"{_bridge(47, 28)} (47 classes, 28×28); {used}", "silent"
    if key == "output":
        return "sigmoid: images in [0, 1]", "silent"
    if key == "dropout_rate":
        return (f"Dropout2d p = {s['dropout']} after each layer after the matrix (the paper: 'heavy', no rate; "
                f"{s['dropout']} is light)"), "silent"
    if key == "sample_dropout":
        on = {True: "on", False: "off"}
        return (f"the paper's generator: {on[bool(s['sample_dropout'])]}; ours: {on[bool(s['ours_sample_dropout'])]}; "
                "the other setting shown beside", "same" if s["sample_dropout"] else "differs")
    if key == "loss":
        return "the paper's generator: exactly this; ours: + ε·Div", "same"
    if key == "weights":
        return f"α = {s['alpha']:g}, β = {s['beta']:g}, γ = {s['gamma']:g}, δ = {s['delta']:g}", "silent"
    if key == "kl_target":
        return "the one-hot condition (counterfeit mode); the soft condition (inversion mode)", "same"
    if key == "feature_layer":
        return ("the classifier's penultimate features (its named feature layer, else the input of its last linear "
                "layer); Ortho on L2-normalised features"), "silent"
    if key == "optimizer":
        return "Adam (β = 0.9, 0.999), constant learning rate", "silent"
    if key == "lr":
        return f"{s['lr']:g}", "silent"
    if key == "steps_batch":
        return f"{s['steps']} steps, batch {s['batch_size']} (every class equally often)", "silent"
    if key == "stop":
        r = s["plateau"]
        return (f"each generator trains until the plateau test passes, at most the steps above: checked every "
                f"{r['every']} steps from step {r['min_steps']}, it passes when the batch's mean confidence and every "
                f"weighted loss term have moved by at most {r['tol']:.0%} of their range between the last "
                f"{r['frac']:.0%} of the steps and the {r['frac']:.0%} before; where it stopped is shown"), "silent"
    if key == "studies":
        return _studies_text(P, s), "ours"
    if key == "div":
        return ("ε, τ chosen per classifier from ε ∈ {" + ", ".join(f"{e:g}" for e in sel["epsilons"]) + "}, τ ∈ {"
                + ", ".join(f"{t:g}" for t in sel["taus"]) + "}; the paper's generator: ε = 0"), "ours"
    if key == "selection":
        k = len(sel["epsilons"]) * len(sel["taus"])
        fsel = cf.selection_settings("full")
        kf = len(fsel["epsilons"]) * len(fsel["taus"])
        less = f" ({k} of full's {kf} candidates: a reduced grid)" if k < kf else ""
        return (f"{k} candidates × at most {sel['steps']} steps = at most {k * int(sel['steps'])} extra generator steps "
                f"for ours{less} (the paper's generator: none)"), "ours"
    if key == "seeds":
        return f"{s['n_seeds']} per generator in the headline comparison", "silent"
    raise KeyError(key)


def _studies_text(P, s: dict) -> str:
    """The studies' sizes at profile ``P`` against ``full``'s (the paper-scale sizes)."""
    a, f, fs = arch_settings(P), arch_settings("full"), cf.settings("full")
    abl = f"ablation: {len(ABLATION)} rows of {s['ablation_steps']} steps on {s['ablation_datasets']} dataset(s)"
    arch = (f"other architectures: {', '.join(a['architectures'])} on "
            f"{a['arch_datasets'] or 'every'} dataset(s)")
    bud = (f"budget grid against the {a['budget_arch']}: {len(a['budget'])} (steps, lr) up to "
           f"{max(st for st, _ in a['budget'])} steps")
    sl = f"sliders: {s['slider_points']} values per knob plus the setting, {s['slider_steps']} fine-tune steps"
    if P.scale == "full" and not P.dry_run:
        return "; ".join((abl, arch, bud, sl)) + " (the full grids)"
    return "; ".join((
        abl + f" (full: {fs['ablation_steps']} steps on {fs['ablation_datasets']})",
        arch + f" (full: {f['arch_datasets'] or 'every'})",
        bud + f" (full: {len(f['budget'])} up to {max(st for st, _ in f['budget'])})",
        sl + f" (full: {fs['slider_points']} values, {fs['slider_steps']} steps)"))


def differ_rows(profile=None) -> list[dict]:
    """"Where we differ", generated from the settings of ``profile``: one row per element of
    :data:`DIFFER_ELEMENTS` with the paper's wording (quoted, :data:`PAPER`) or
    "not stated", ours at this profile, and which is which. Values the paper does not state are ours
    (the reference implementation could not be identified: none is attributed to it)."""
    P = get_profile(profile)
    s, sel = cf.settings(P), cf.selection_settings(P)
    rows = []
    for key, name in DIFFER_ELEMENTS.items():
        quote = PAPER[key]
        ours, which = _ours(key, P, s, sel)
        if quote is None and which == "same":
            raise AssertionError(f"{key}: 'same' needs the paper's wording")
        rows.append({"element": name, "paper": f"“{quote}”" if quote else "not stated", "ours": ours,
                     "which": _WHICH[which], "profile": P.name})
    return rows


def differ_table(profiles=_PROFILES) -> pd.DataFrame:
    """:func:`differ_rows` for each of ``profiles`` (default: every profile), indexed by (element, profile)."""
    rows = [r for p in profiles for r in differ_rows(p)]
    return pd.DataFrame(rows).set_index(["element", "profile"])
