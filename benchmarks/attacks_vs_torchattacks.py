"""utils.attacks against torchattacks on the CPU: speed and strength side by side.

    python benchmarks/attacks_vs_torchattacks.py [--images 256] [--repeats 3] [--device cpu]

Both libraries attack the same model (the zoo's ``fashion_cnn``), the same test images (one
batch), with the same eps, step size, number of steps and random-start setting.  For every
attack the table gives images per second of each (the best of ``--repeats`` interleaved runs,
so that a busy machine hurts both alike), their ratio (ours / torchattacks; above 1 means
utils.attacks is faster), and the strength: the accuracy left on the attacked images (lower is
stronger) and, for C&W, the success rate and the mean L2 norm of the successful perturbations.
The last table shows what ``pgd(..., early_stop=True)`` saves: image-level forward-backward
passes at equal success.

torchattacks is a development dependency only (``pip install -e .[dev]``).
"""

from __future__ import annotations

import argparse
import time

import torch

from utils import attacks, zoo
from utils.data import fashion_mnist
from utils.session import pick_device


def timed(function):
    start = time.perf_counter()
    result = function()
    if result.is_cuda:
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256, help="batch size (test images)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing runs")
    parser.add_argument("--device", default="cpu", help="cpu (the default) or cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torchattacks

    device = pick_device(args.device)
    model = zoo.load("fashion_cnn", device)
    images, labels = fashion_mnist("test", device=device)
    x, y = images[: args.images], labels[: args.images]
    clean_accuracy = (model(x).argmax(1) == y).float().mean().item()
    eps, alpha, steps, l2_eps, l2_alpha = 0.1, 0.02, 10, 1.5, 0.3
    print(f"fashion_cnn on {device.type}, {len(x)} test images (clean accuracy "
          f"{clean_accuracy:.3f}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"torchattacks {torchattacks.__version__}; eps {eps} (L2: {l2_eps}), {steps} steps\n")

    generator = torch.Generator().manual_seed(args.seed)
    cases = [
        ("FGSM", lambda: attacks.fgsm(model, x, y, eps=eps),
         torchattacks.FGSM(model, eps=eps)),
        ("PGD-10 Linf", lambda: attacks.pgd(model, x, y, eps=eps, alpha=alpha, steps=steps,
                                            generator=generator),
         torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)),
        ("PGD-10 L2", lambda: attacks.pgd(model, x, y, eps=l2_eps, alpha=l2_alpha, steps=steps,
                                          norm="l2", generator=generator),
         torchattacks.PGDL2(model, eps=l2_eps, alpha=l2_alpha, steps=steps, random_start=True)),
        ("MI-FGSM", lambda: attacks.mifgsm(model, x, y, eps=eps, alpha=alpha, steps=steps),
         torchattacks.MIFGSM(model, eps=eps, alpha=alpha, steps=steps, decay=1.0)),
        ("CW-L2 (c=1, 50 steps)", lambda: attacks.cw_l2(model, x, y, c=1.0, kappa=0.0, steps=50,
                                                        lr=0.01, search_steps=1),
         torchattacks.CW(model, c=1.0, kappa=0.0, steps=50, lr=0.01)),
    ]

    header = (f"{'attack':24s} {'ours img/s':>10s} {'ta img/s':>9s} {'ratio':>6s}   "
              f"{'ours strength':>22s} {'torchattacks strength':>22s}")
    print(header)
    print("-" * len(header))
    for name, ours, theirs in cases:
        best = {"ours": float("inf"), "ta": float("inf")}
        results = {}
        for _ in range(args.repeats):
            for who, run in (("ours", ours), ("ta", lambda: theirs(x, y))):
                adv, seconds = timed(run)
                best[who] = min(best[who], seconds)
                results[who] = adv
        strength = {}
        for who, adv in results.items():
            with torch.no_grad():
                wrong = model(adv).argmax(1) != y
            if name.startswith("CW"):
                norms = (adv - x).flatten(1).norm(dim=1)
                success = wrong & (model(x).argmax(1) == y)
                mean_l2 = norms[success].mean().item() if success.any() else float("nan")
                strength[who] = f"success {success.float().mean().item():.3f}, L2 {mean_l2:.3f}"
            else:
                strength[who] = f"robust acc {1 - wrong.float().mean().item():.3f}"
        rate = {who: len(x) / seconds for who, seconds in best.items()}
        print(f"{name:24s} {rate['ours']:10.1f} {rate['ta']:9.1f} "
              f"{rate['ours'] / rate['ta']:6.2f}   {strength['ours']:>22s} "
              f"{strength['ta']:>22s}", flush=True)

    print("\nPGD with early stop (images stop moving once misclassified), eps 0.1, alpha 0.02")
    print(f"{'steps':>5s} {'success (full)':>15s} {'success (early)':>16s} "
          f"{'passes (full)':>14s} {'passes (early)':>15s} {'saved':>6s} {'time full/early':>16s}")
    for steps_here in (10, 20):
        runs = {}
        for stop in (False, True):
            g = torch.Generator().manual_seed(args.seed)
            start = time.perf_counter()
            adv, stats = attacks.pgd_stats(model, x, y, eps=eps, alpha=alpha, steps=steps_here,
                                           generator=g, early_stop=stop)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                success = (model(adv).argmax(1) != y).float().mean().item()
            runs[stop] = (success, stats, seconds)
        (s_full, st_full, t_full), (s_early, st_early, t_early) = runs[False], runs[True]
        print(f"{steps_here:5d} {s_full:15.3f} {s_early:16.3f} {st_full.passes:14d} "
              f"{st_early.passes:15d} {st_early.saved:6.1%} {t_full:7.1f}s/{t_early:.1f}s")


if __name__ == "__main__":
    main()
