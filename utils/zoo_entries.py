"""The zoo's table: every trained model of the course, one line each.

Builders and recipes are named as ``"module:function"`` strings, so reading this table (and
``python -m utils.zoo list``) imports no lecture's topic package: a topic is imported only when
one of its entries is built or trained.  A recipe is called as
``recipe(model, device, **options)`` and returns the trained model.

To add a model: write its builder and recipe in the topic package, add a line here, then run
``python -m utils.zoo retrain NAME`` (which records the file's sha256 in ``SHA256SUMS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One zoo entry: ``build`` and ``recipe`` as ``"module:function"`` names, and what it is."""

    name: str
    build: str
    recipe: str
    summary: str
    options: dict = field(default_factory=dict)


_CLASSIFIER = "utils.recipes:fashion_classifier"
# lecture 06: the weight of iCE's maximum-likelihood term on the nuisance (per dimension)
ML_WEIGHT = 0.05
_DOMAIN = {"steps": 9000, "batch_size": 64, "optimiser": "adam", "lr": 1e-3, "weight_decay": 5e-4,
           "seed": 0}

ENTRIES: tuple[Entry, ...] = (
    # --- lectures 00 and 01: the CNN everyone attacks, and its adversarially trained twin ------
    Entry("fashion_cnn", "utils.models:fashion_cnn", _CLASSIFIER,
          "small 4-conv CNN on Fashion-MNIST (the model lecture 01 attacks)",
          {"epochs": 4, "lr": 2e-3}),
    Entry("fashion_cnn_adv", "utils.models:fashion_cnn_adv", "utils.recipes:fast_adversarial",
          "3-block CNN adversarially trained (fast FGSM, eps 0.125): lecture 01's defence",
          {"eps": 0.125, "epochs": 3, "lr": 3e-3}),
    Entry("fashion_cnn_distilled", "utils.models:fashion_cnn",
          "utils.recipes:defensive_distillation",
          "fashion_cnn's architecture trained at T = 20 on fashion_cnn's answers: lecture 01's "
          "gradient-masking defence",
          {"teacher": "fashion_cnn", "temperature": 20.0, "epochs": 4, "lr": 2e-3}),
    # --- lecture 07: base classifiers of randomized smoothing (trained under Gaussian noise) ---
    Entry("fashion_cnn_noise025", "utils.models:fashion_cnn_adv", "utils.recipes:gaussian_noise",
          "fashion_cnn_adv's small architecture trained on x + N(0, 0.25^2): lecture 07's smoothed "
          "classifier, sigma = 0.25", {"sigma": 0.25, "epochs": 3, "lr": 3e-3}),
    Entry("fashion_cnn_noise050", "utils.models:fashion_cnn_adv", "utils.recipes:gaussian_noise",
          "the same architecture trained on x + N(0, 0.5^2): lecture 07's smoothed classifier, "
          "sigma = 0.5", {"sigma": 0.5, "epochs": 3, "lr": 3e-3}),
    # --- lecture 02: five architectures, the stand-ins for the noise article's five networks -
    Entry("fashion_mlp", "utils.models:fashion_mlp", _CLASSIFIER,
          "multilayer perceptron, 784-256-128-10 (lecture 02's zoo)", {"epochs": 3, "lr": 2e-3}),
    Entry("fashion_lenet", "utils.models:fashion_lenet", _CLASSIFIER,
          "LeNet/AlexNet-like CNN, 5x5 kernels, dropout head (lecture 02's zoo)",
          {"epochs": 2, "lr": 2e-3}),
    Entry("fashion_vgg", "utils.models:fashion_vgg", _CLASSIFIER,
          "VGG-like CNN, pairs of 3x3 convolutions, two-layer head (lecture 02's zoo)",
          {"epochs": 2, "lr": 2e-3}),
    Entry("fashion_resnet", "utils.models:fashion_resnet", _CLASSIFIER,
          "ResNet-like CNN, three stages of basic blocks with batch norm (lecture 02's zoo)",
          {"epochs": 2, "lr": 3e-3}),
    Entry("fashion_densenet", "utils.models:fashion_densenet", _CLASSIFIER,
          "DenseNet-like CNN, three dense blocks, growth 12 (lecture 02's zoo)",
          {"epochs": 2, "lr": 3e-3}),
    # --- lecture 03: the face black box and its distilled students ----------------------------
    Entry("face_blackbox", "utils.faces.models:blackbox_net", "utils.faces.recipes:train_blackbox",
          "lecture 03's black box: ResNet-like 64-d face descriptor, Olivetti people 0-24"),
    Entry("face_student_resnet", "utils.faces.models:student_resnet",
          "utils.faces.recipes:distill_student",
          "lecture 03 student (small ResNet-like) distilled from face_blackbox's descriptors"),
    Entry("face_student_cnn", "utils.faces.models:student_cnn", "utils.faces.recipes:distill_student",
          "lecture 03 student (plain VGG-style CNN) distilled from face_blackbox's descriptors"),
    Entry("face_student_wide", "utils.faces.models:student_wide",
          "utils.faces.recipes:distill_student",
          "lecture 03 student (wide, shallow CNN) distilled from face_blackbox's descriptors"),
    Entry("face_student_resnet_l2", "utils.faces.models:student_resnet",
          "utils.faces.recipes:distill_student",
          "face_student_resnet distilled with the L2 distance instead of MSE (the write-up's "
          "comparison)", {"loss": "l2"}),
    # --- lecture 04: domain adaptation by gradient reversal (utils.domain) --------------------
    # one architecture, optimiser and length for all; settings chosen on target validation
    Entry("domain_source_only", "utils.domain.models:domain_net", "utils.domain.recipes:source_only",
          "lecture 04: CNN trained on Fashion-MNIST only (the no-adaptation baseline)",
          {**_DOMAIN}),
    Entry("domain_dann", "utils.domain.models:domain_net", "utils.domain.recipes:dann",
          "lecture 04: the same CNN trained by DANN (Fashion-MNIST + unlabelled Fashion-M)",
          {**_DOMAIN, "lambda_max": 1.0}),
    Entry("domain_oracle", "utils.domain.models:domain_net", "utils.domain.recipes:oracle",
          "lecture 04: the same CNN trained on labelled Fashion-M (the target oracle)",
          {**_DOMAIN}),
    Entry("domain_dann_lambda0", "utils.domain.models:domain_net", "utils.domain.recipes:dann",
          "lecture 04 ablation: DANN with lambda = 0 (target images reach batch norm, no reversal)",
          {**_DOMAIN, "lambda_max": 0.0}),
    Entry("domain_dann_label_shift", "utils.domain.models:domain_net",
          "utils.domain.recipes:dann_label_shift",
          "lecture 04 failure case: DANN with a label-shifted unlabelled target (classes 5-9 rare)",
          {**_DOMAIN, "lambda_max": 1.0}),
    # --- lecture 05: GANs and adversarial losses (utils.gans) ---------------------------------
    Entry("gan_dcgan", "utils.gans.models:dcgan", "utils.gans.recipes:train_dcgan",
          "lecture 05's DCGAN on Fashion-MNIST (latent 32, non-saturating loss; G and D)",
          {"steps": 6000, "batch_size": 64, "lr": 2e-4}),
    Entry("gan_deblur_l1", "utils.gans.pix2pix:deblur_generator", "utils.gans.recipes:train_deblur_net",
          "lecture 05's de-blurring U-Net trained with L1 alone (the baseline)",
          {"adversarial_weight": 0.0, "steps": 3000}),
    Entry("gan_deblur_adv", "utils.gans.pix2pix:deblur_generator", "utils.gans.recipes:train_deblur_net",
          "lecture 05's de-blurring U-Net trained with L1 + a PatchGAN discriminator (pix2pix)",
          {"adversarial_weight": 1.0, "steps": 3000}),
    # --- lecture 06: invertible networks (utils.invertible) -----------------------------------
    Entry("invertible_fashion", "utils.invertible.network:fashion_invertible",
          "utils.invertible.recipes:train_cross_entropy",
          "fully invertible RevNet-style classifier, cross-entropy on its first 10 outputs "
          "(lecture 06)",
          {"epochs": 3, "lr": 3e-3, "batch_size": 256}),
    Entry("invertible_fashion_ice", "utils.invertible.network:fashion_invertible",
          "utils.invertible.recipes:train_ice",
          "the same invertible classifier trained with independence cross-entropy (lecture 06)",
          {"epochs": 3, "lr": 3e-3, "batch_size": 256, "weight": 0.5}),
    Entry("invertible_fashion_ice_ml", "utils.invertible.network:fashion_invertible",
          "utils.invertible.recipes:train_ice",
          "iCE plus the paper's maximum-likelihood term on the nuisance (lecture 06)",
          {"epochs": 3, "lr": 3e-3, "batch_size": 256, "weight": 0.5, "ml_weight": ML_WEIGHT}),
)
