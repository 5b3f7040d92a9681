"""The noise article's experiment: how confident networks are on random noise, and on what.

- :func:`noise_batch` -- the article's noise images (``standard_normal * 255`` cast to uint8,
  wrap-around included, see :func:`utils.data.noise_images`) as float tensors in [0, 1], through
  the same conversion as real images;
- :func:`confidences` -- the max-softmax confidence and the predicted class of each image;
- :func:`describe` -- ``count, mean, std, min, 25%, 50%, 75%, max`` of a set of numbers, as
  ``pandas.Series.describe`` (and so the article's table) gives them;
- :func:`class_counts`, :func:`agreement_matrix` -- which classes the networks see, and how
  often two networks give an image the same class;
- :func:`imagenet_noise_experiment` -- the article's own ImageNet networks, only where their
  weights are already on disk (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.training import evaluating


DESCRIBE_ROWS = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


def noise_batch(n: int, *, seed: int = 0, height: int = 28, width: int = 28, channels: int = 1,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` of the article's noise images as a float batch ``(n, C, H, W)`` in [0, 1]."""
    from utils.data import noise_images, to_tensor

    return to_tensor(noise_images(n, height=height, width=width, channels=channels, seed=seed),
                     device=device)


@torch.no_grad()
def confidences(model: nn.Module, images: torch.Tensor, *, batch_size: int = 500):
    """``(confidence, predicted)``: the largest softmax probability of each image and its class."""
    with evaluating(model):
        probs = torch.cat([F.softmax(model(images[i:i + batch_size]), dim=1)
                           for i in range(0, len(images), batch_size)])
    confidence, predicted = probs.max(dim=1)
    return confidence, predicted


def describe(values: torch.Tensor) -> dict[str, float]:
    """The summary ``pandas.Series.describe()`` prints: count, mean, std (with ``n - 1``), min,
    quartiles (linear interpolation) and max, as a dict of Python floats keyed by
    :data:`DESCRIBE_ROWS`."""
    values = torch.as_tensor(values).detach().flatten().double()
    if values.numel() == 0:
        raise ValueError("describe() needs at least one value")
    quartiles = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=values.dtype,
                                                    device=values.device))
    stats = torch.stack([torch.tensor(float(values.numel()), dtype=values.dtype,
                                      device=values.device),
                         values.mean(),
                         values.std() if values.numel() > 1 else values.new_tensor(float("nan")),
                         values.min(), *quartiles, values.max()])
    return dict(zip(DESCRIBE_ROWS, stats.cpu().tolist()))


def class_counts(predicted: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """How many images were given each class: ``(num_classes,)`` int64."""
    return torch.bincount(predicted.flatten(), minlength=num_classes)


def agreement_matrix(predictions: Sequence[torch.Tensor]) -> torch.Tensor:
    """``A[i, j]``: the fraction of images that networks ``i`` and ``j`` put in the same class."""
    stacked = torch.stack([p.flatten() for p in predictions])               # (M, N)
    return (stacked[:, None, :] == stacked[None, :, :]).double().mean(-1)


IMAGENET_NETWORKS = {  # the article's five, as torchvision names them
    "vgg16": "VGG16_Weights",
    "resnet18": "ResNet18_Weights",
    "alexnet": "AlexNet_Weights",
    "densenet121": "DenseNet121_Weights",
    "inception_v3": "Inception_V3_Weights",
}


def imagenet_weight_files() -> dict[str, Path]:
    """Where torchvision would keep each network's ImageNet weights (``TORCH_HOME`` cache)."""
    import torchvision

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    files = {}
    for name, enum in IMAGENET_NETWORKS.items():
        url = getattr(torchvision.models, enum).IMAGENET1K_V1.url
        files[name] = folder / url.rsplit("/", 1)[-1]
    return files


def imagenet_noise_experiment(n: int = 100, *, seed: int = 0, batch_size: int = 25,
                              device: torch.device | str | None = None,
                              networks: Sequence[str] | None = None):
    """The article's experiment on its own ImageNet networks, if their weights are on disk.

    Nothing is downloaded: networks whose weight file is not in torchvision's cache are
    skipped, and when none is there one line says so and ``None`` is returned.  Otherwise
    ``n`` noise images of 256x256x3 made by the article's recipe go through its preprocessing
    (resize 256, centre crop 224 -- for all five, Inception included, as the article did -- and
    ImageNet normalisation) and the
    result is ``{network: (confidence, predicted, class_names)}``.
    """
    import torchvision
    from torchvision.transforms import v2

    from utils.data import noise_images

    files = imagenet_weight_files()
    wanted = list(networks) if networks is not None else list(files)
    present = [name for name in wanted if files[name].exists()]
    if not present:
        print(f"No ImageNet weights for {', '.join(wanted)} in torchvision's cache (TORCH_HOME); "
              "nothing is downloaded, so the ImageNet version of the experiment is skipped.")
        return None
    device = torch.device(device) if device is not None else torch.device("cpu")
    raw = torch.from_numpy(noise_images(n, height=256, width=256, channels=3, seed=seed))
    raw = raw.permute(0, 3, 1, 2)                                      # uint8 NCHW
    results = {}
    for name in present:
        weights = getattr(torchvision.models, IMAGENET_NETWORKS[name]).IMAGENET1K_V1
        kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
        model.load_state_dict(torch.load(files[name], map_location="cpu", weights_only=True))
        model = model.to(device).eval()
        prepare = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224),
                              v2.ToDtype(torch.float32, scale=True),
                              v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        images = prepare(raw).to(device)
        confidence, predicted = confidences(model, images, batch_size=batch_size)
        results[name] = (confidence, predicted, weights.meta["categories"])
    return results
