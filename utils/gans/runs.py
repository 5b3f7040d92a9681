"""Short GAN training runs that keep a record: losses per step, FID, coverage and samples over time.

The lecture cannot afford to train GANs while it runs, and one run says little about a GAN (the
game is noisy from seed to seed).  :func:`recorded_run` trains a small DCGAN for a few hundred
steps under given settings -- G's loss, the optimiser of each player, D's learning rate, and an
optional **head start** of D-only steps against the untrained G (D wins early, the regime in which
the minimax loss is said to saturate) -- and returns everything needed to plot and assert on it
later: the per-step metrics of both players, the classifier FID and class coverage at checkpoints,
and a few fixed-code samples at each checkpoint.  ``benchmarks/gans_*.py`` run it over grids and
seeds and store the records as JSON; the lecture loads and asserts on those.
"""

from __future__ import annotations

import base64

import torch
from torch import nn

from utils.gans.losses import d_loss_kind
from utils.gans.metrics import class_coverage, features, frechet_distance
from utils.gans.models import generate, latent, small_dcgan
from utils.gans.steps import d_step, gan_step
from utils.training import Batches, fit, make_optimiser

OPTIMISERS = ("adam", "sgd")


def player_optimiser(module: nn.Module, name: str, lr: float):
    """Adam with DCGAN's beta1 = 0.5, or SGD with momentum 0.5, over ``module``'s parameters."""
    if name == "adam":
        return make_optimiser(module.parameters(), "adam", lr=lr, betas=(0.5, 0.999))
    if name == "sgd":
        return make_optimiser(module.parameters(), "sgd", lr=lr, momentum=0.5)
    raise ValueError(f"optimiser must be one of {OPTIMISERS}, got {name!r}")


def encode_images(images: torch.Tensor) -> dict:
    """Images in [0, 1] -> ``{"shape", "uint8_base64"}``: 8 bits a pixel, small enough for JSON."""
    pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()
    return {"shape": list(pixels.shape),
            "uint8_base64": base64.b64encode(pixels.numpy().tobytes()).decode("ascii")}


def decode_images(encoded: dict) -> torch.Tensor:
    """The inverse of :func:`encode_images`: a float tensor in [0, 1] (to 1/255)."""
    raw = bytearray(base64.b64decode(encoded["uint8_base64"]))
    pixels = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.zeros(0, dtype=torch.uint8)
    return pixels.reshape(encoded["shape"]).float() / 255


def recorded_run(images: torch.Tensor, classifier: nn.Module, reference_feats: torch.Tensor, *,
                 loss: str = "non_saturating", optimiser: str = "adam", lr: float = 1e-3,
                 lr_d: float | None = None, head_start: int = 0, steps: int = 500,
                 batch_size: int = 64, seed: int = 0, eval_every: int = 100,
                 n_eval: int | None = None, n_grid: int = 8, build=small_dcgan,
                 device: torch.device | str | None = None, progress: bool = False) -> dict:
    """Train ``build()`` (seeded by ``seed``) on ``images`` and record it.

    ``lr`` is G's learning rate and D's unless ``lr_d`` is given.  ``head_start`` D-only steps
    (G untrained and fixed) come first, with D's own optimiser.  Every ``eval_every`` steps (and
    at step 0) the classifier FID of ``n_eval`` samples (default: as many as ``reference_feats``)
    against ``reference_feats`` in ``classifier``'s features, the class shares of those samples,
    and ``n_grid`` samples at fixed codes are stored.  Returns a dict of plain lists:
    ``{"settings", "history": {metric: per-step list}, "eval_steps", "fid", "coverage",
    "grids"}`` (one :func:`encode_images` of ``(n_grid, 1, 28, 28)`` per checkpoint), and the
    trained ``"model"`` (drop it before saving the record).
    """
    if head_start < 0 or steps < 1 or eval_every < 1:
        raise ValueError(f"need head_start >= 0, steps >= 1, eval_every >= 1, got {head_start}, "
                         f"{steps}, {eval_every}")
    d_loss_kind(loss)                                       # validates the loss name
    device = torch.device(device) if device is not None else images.device
    n_eval = n_eval if n_eval is not None else len(reference_feats)
    torch.manual_seed(seed)
    gan = build().to(device)
    G, D = gan.generator, gan.discriminator
    opt_G = player_optimiser(G, optimiser, lr)
    opt_D = player_optimiser(D, optimiser, lr if lr_d is None else lr_d)
    eval_codes = latent(n_eval, G.latent_dim, device=device,
                        generator=torch.Generator(device=device).manual_seed(10_000 + seed))
    record = {"settings": {"loss": loss, "optimiser": optimiser, "lr": lr,
                           "lr_d": lr if lr_d is None else lr_d, "head_start": head_start,
                           "steps": steps, "batch_size": batch_size, "seed": seed,
                           "n_eval": n_eval, "model": getattr(build, "__name__", str(build))},
              "history": {}, "eval_steps": [], "fid": [], "coverage": [], "grids": []}

    def evaluate(at: int) -> None:
        fakes = generate(gan, eval_codes)
        record["eval_steps"].append(at)
        record["fid"].append(frechet_distance(features(classifier, fakes), reference_feats).item())
        record["coverage"].append(class_coverage(classifier, fakes).tolist())
        record["grids"].append(encode_images(fakes[:n_grid]))
        gan.train()

    codes = torch.Generator(device=device).manual_seed(seed)
    batches = Batches(images, batch_size=batch_size, seed=seed, device=device, drop_last=True)
    if head_start:
        kind = d_loss_kind(loss)

        def d_only(batch, p):
            real = batch[0]
            return d_step(G, D, opt_D, real, latent(len(real), G.latent_dim, generator=codes,
                                                    device=device), kind)

        head = fit(d_only, batches, steps=head_start, description="D head start",
                   progress=progress)
        record["head_start_d_fake"] = float(head["d_fake"][-1])
    evaluate(0)
    step = gan_step(gan, opt_G, opt_D, loss=loss, generator=codes)
    done = 0
    while done < steps:
        chunk = min(eval_every, steps - done)
        part = fit(step, batches, steps=chunk, description=f"GAN ({loss}, {optimiser})",
                   progress=progress)
        for key, values in part.items():
            record["history"].setdefault(key, []).extend(float(v) for v in values)
        done += chunk
        evaluate(done)
    gan.eval()
    record["model"] = gan
    return record


__all__ = ["OPTIMISERS", "player_optimiser", "encode_images", "decode_images", "recorded_run"]
