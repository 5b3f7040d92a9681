"""Lecture 03's topic: the face-attack competition (a replica of Machines Can See 2018).

The setting.  A face-descriptor network is a *black box*: images in, descriptors out, nothing
else.  A *pair set* is 5 source faces of one person and 5 target faces of another.  An attack
changes each source image so that its descriptor moves close (Euclidean distance) to the
target descriptors, while every changed image keeps SSIM >= 0.95 to its original.  The score of
a pair set is the mean L2 distance over the 5 x 5 source-target pairs; the score of a
submission is that mean over its pair sets.  Lower is better.

One module per part of the game (each importable on its own; this package re-exports them):

- :mod:`~utils.faces.game` -- the identity split (:data:`TRAIN_PEOPLE` trained the networks,
  pair sets come from :data:`UNSEEN_PEOPLE` only), augmentation, :func:`pair_sets`;
- :mod:`~utils.faces.blackbox` -- :class:`BlackBox`, the only way to reach the descriptor net;
- :mod:`~utils.faces.rule` -- the SSIM >= 0.95 rule on saved (uint8) images, its fast twin
  and the projection back onto it;
- :mod:`~utils.faces.scoring` -- the scorer, submissions and the leaderboard (the
  ``python -m utils.faces`` command line);
- :mod:`~utils.faces.models`, :mod:`~utils.faces.recipes` -- the networks and their zoo recipes;
- :mod:`~utils.faces.tricks` -- the write-up's tricks, one small object each, and the
  :class:`AttackPlan` that puts one in each slot of a gradient attack's step;
- :mod:`~utils.faces.ladder` -- attacks, stages and pipelines composed of them: the ladder of
  the write-up rung by rung, its ablation, and the best pipeline.
"""

from utils.faces.blackbox import BlackBox, QueryBudgetExceeded, check_images, query_tensor
from utils.faces.game import (DIM, N_PEOPLE, PAIR_SIZE, SIZE, SSIM_LIMIT, STUDENTS, TRAIN_PEOPLE,
                              UNSEEN_PEOPLE, PairSet, augment, faces_of, pair_sets)
from utils.faces.ladder import (BASELINE, BEST, BEST_BEFORE_TUNING, DE_POLISH, FGVM,
                                AttackResult, GradientStage, Pipeline, PolishStage,
                                ablation_rungs, attack, attack_stats, best_attack, cw_attack,
                                de_polish, de_polish_stats,
                                gradient_pipeline, ladder_rungs, paired_differences,
                                polished_pipeline, run_ladder)
from utils.faces.recipes import (DISTILL_COPIES, descriptor_quality, distill_step,
                                 distill_student, distillation_loss, distillation_set,
                                 load_students, student_mse, train_blackbox)
from utils.faces.rule import guard, is_valid, project_ssim, ssim_fast, ssim_uint8, to_uint8
from utils.faces.scoring import (SUBMISSION_FILE, SubmissionError, baseline_score, leaderboard,
                                 main, pair_distances, read_submission, score_images,
                                 score_submission, write_submission)
from utils.faces.tricks import AttackPlan, blackbox_loss, plan, student_loss
from utils.transforms import gaussian_blur

__all__ = [name for name in dir() if not name.startswith("_")]
