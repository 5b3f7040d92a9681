"""Lecture 06: fully invertible networks, metamers and excessive invariance (Jacobsen et al. 2019).

- :mod:`utils.invertible.blocks`   -- additive (RevNet) coupling with its exact inverse,
  space-to-depth down-sampling, and the other invertible layers
- :mod:`utils.invertible.network`  -- the fully invertible classifier (first C outputs = logits, the
  rest = nuisance) and whole-data-set helpers (encode, decode, reconstruction error)
- :mod:`utils.invertible.metamers` -- metameric sampling, the metamer study and the metameric attack
- :mod:`utils.invertible.ice`      -- independence cross-entropy: nuisance classifier, the optional
  maximum-likelihood term on the nuisance, and the training step
- :mod:`utils.invertible.recipes`  -- zoo recipes ``invertible_fashion``, ``invertible_fashion_ice``,
  ``invertible_fashion_ice_ml``
"""
