"""Lecture 05: generative adversarial networks, and the discriminator as a learned loss.

One module per idea:

- :mod:`utils.gans.models`  -- DCGAN's generator and discriminator for 28x28 images, sampling,
  latent interpolation;
- :mod:`utils.gans.losses`  -- D's log-loss and G's two losses (minimax, non-saturating) on logits;
- :mod:`utils.gans.steps`   -- the D step, the G step, and ``gan_step`` for
  :func:`utils.training.fit` (the course's one training loop);
- :mod:`utils.gans.metrics` -- "classifier FID" in a zoo classifier's features, k-NN precision
  and recall, class coverage and its total variation, sharpness;
- :mod:`utils.gans.runs`    -- short training runs that record losses, FID, coverage and samples
  over time (what ``benchmarks/gans_*.py`` run over grids and seeds);
- :mod:`utils.gans.pix2pix` -- de-blurring Fashion-MNIST with L1 alone or L1 + a PatchGAN, and the
  unsharp-mask control;
- :mod:`utils.gans.recipes` -- how the zoo's ``gan_*`` checkpoints are trained.

The package uses the core (data, training, zoo) and no other topic.
"""

from utils.gans.losses import discriminator_loss, generator_loss
from utils.gans.models import DCGAN, dcgan, interpolate, latent, sample, small_dcgan
from utils.gans.steps import d_step, g_step, gan_optimisers, gan_step, train_gan

__all__ = ["discriminator_loss", "generator_loss", "DCGAN", "dcgan", "small_dcgan", "latent",
           "sample", "interpolate", "d_step", "g_step", "gan_optimisers", "gan_step", "train_gan"]
