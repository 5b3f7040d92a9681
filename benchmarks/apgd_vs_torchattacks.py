"""utils.attacks' APGD against torchattacks' APGD on the CPU: strength and speed, same model.

    python benchmarks/apgd_vs_torchattacks.py [--images 200] [--seeds 0 1 2] [--device cpu]
    python benchmarks/apgd_vs_torchattacks.py --autoattack --save benchmarks/results/autoattack_fashion.json

Both libraries attack the zoo's adversarially trained ``fashion_cnn_adv`` on the same first
``--images`` test images at eps = 0.1 (L-inf), 100 steps, one restart: APGD-CE, APGD-DLR and
APGD-T (9 target classes).  For each attack and seed the table gives the robust accuracy left
(lower is stronger) with its 95 % Wilson interval, and the wall time of each; the last columns
are the mean accuracy difference (ours - theirs; within the seeds' spread means equal strength)
and the speed ratio (their time / ours; above 1 means utils.attacks is faster).

``--autoattack`` runs torchattacks' full AutoAttack (standard version: APGD-CE, APGD-T, FAB-T,
Square with 5000 queries) on ``fashion_cnn_adv`` and ``fashion_cnn`` and writes, per model, which
images it leaves correctly classified: lecture 07 loads that file (too slow for the lecture's
3-minute budget on 2 cores) and compares it with its own APGD-CE + APGD-T composition.

torchattacks is a development dependency only (``pip install -e .[dev]``).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from attacks_vs_torchattacks import timed  # the same wall-clock timer (this folder is on sys.path)
from utils import attacks, zoo
from utils.data import fashion_mnist
from utils.paths import atomic_write
from utils.session import pick_device
from utils.stats import Share

EPS, STEPS = 0.1, 100


def robust(model, adv, y) -> int:
    with torch.no_grad():
        return int((model(adv).argmax(1) == y).sum())


def compare(model, x, y, seeds) -> list[dict]:
    import torchattacks

    pairs = {
        "APGD-CE": (lambda g: attacks.apgd(model, x, y, eps=EPS, steps=STEPS, generator=g),
                    lambda s: torchattacks.APGD(model, eps=EPS, steps=STEPS, loss="ce", seed=s)),
        "APGD-DLR": (lambda g: attacks.apgd(model, x, y, eps=EPS, steps=STEPS, loss="dlr",
                                            generator=g),
                     lambda s: torchattacks.APGD(model, eps=EPS, steps=STEPS, loss="dlr", seed=s)),
        "APGD-T (9 targets)": (
            lambda g: attacks.apgd_targeted(model, x, y, eps=EPS, steps=STEPS, target_classes=9,
                                            generator=g),
            lambda s: torchattacks.APGDT(model, eps=EPS, steps=STEPS, n_classes=10, seed=s)),
    }
    rows = []
    for name, (ours, theirs) in pairs.items():
        for seed in seeds:
            generator = torch.Generator(x.device).manual_seed(seed)
            adv_ours, t_ours = timed(lambda: ours(generator))
            torch.manual_seed(seed)
            adv_theirs, t_theirs = timed(lambda: theirs(seed)(x, y))
            assert (adv_ours - x).abs().max() <= EPS + 1e-6
            rows.append({"attack": name, "seed": seed, "ours": robust(model, adv_ours, y),
                         "theirs": robust(model, adv_theirs, y), "n": len(y),
                         "seconds_ours": t_ours, "seconds_theirs": t_theirs})
            print(f"  {name:20s} seed {seed}: ours {rows[-1]['ours']}/{len(y)} in {t_ours:.1f} s, "
                  f"torchattacks {rows[-1]['theirs']}/{len(y)} in {t_theirs:.1f} s", flush=True)
    return rows


def table(rows: list[dict]) -> None:
    print(f"\n| attack | seed | robust acc., utils.attacks | robust acc., torchattacks | "
          f"time ours (s) | time theirs (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {r['seed']} | {Share(r['ours'], r['n'])} | "
              f"{Share(r['theirs'], r['n'])} | {r['seconds_ours']:.1f} | {r['seconds_theirs']:.1f} |")
    print("\n| attack | mean acc. ours | mean acc. theirs | difference (ours - theirs) | "
          "speed ratio (theirs / ours) |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(r["attack"] for r in rows):
        part = [r for r in rows if r["attack"] == name]
        ours = statistics.fmean(r["ours"] / r["n"] for r in part)
        theirs = statistics.fmean(r["theirs"] / r["n"] for r in part)
        ratio = sum(r["seconds_theirs"] for r in part) / sum(r["seconds_ours"] for r in part)
        print(f"| {name} | {ours:.3f} | {theirs:.3f} | {ours - theirs:+.3f} | {ratio:.2f} |")


def autoattack(device, images: int, path: str | None) -> None:
    import torchattacks

    test_x, test_y = fashion_mnist("test", device=device)
    x, y = test_x[:images], test_y[:images]
    result = {"eps": EPS, "images": images, "version": "standard", "seed": 0,
              "torchattacks": torchattacks.__version__, "models": {}}
    for name in ("fashion_cnn_adv", "fashion_cnn"):
        model = zoo.load(name, device)
        attack = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard",
                                         n_classes=10, seed=0)
        adv, seconds = timed(lambda: attack(x, y))
        assert (adv - x).abs().max() <= EPS + 1e-6
        with torch.no_grad():
            correct = (model(adv).argmax(1) == y).cpu().int().tolist()
            clean = (model(x).argmax(1) == y).cpu().int().tolist()
        result["models"][name] = {"correct": correct, "clean_correct": clean, "seconds": seconds}
        print(f"{name}: AutoAttack leaves {Share(sum(correct), images)} "
              f"(clean {sum(clean) / images:.3f}) in {seconds:.0f} s", flush=True)
    if path:
        atomic_write(path, json.dumps(result, indent=1) + "\n")
        print("written", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200, help="first test images")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu", help="cpu (the default) or cuda")
    parser.add_argument("--autoattack", action="store_true",
                        help="run torchattacks' AutoAttack instead (see the module's help)")
    parser.add_argument("--save", help="with --autoattack: the JSON file to write")
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.autoattack:
        autoattack(device, args.images, args.save)
        return
    model = zoo.load("fashion_cnn_adv", device)
    images, labels = fashion_mnist("test", device=device)
    x, y = images[: args.images], labels[: args.images]
    print(f"fashion_cnn_adv, first {args.images} test images, eps {EPS}, {STEPS} steps, "
          f"clean accuracy {robust(model, x, y) / len(y):.3f}; threads {torch.get_num_threads()}")
    table(compare(model, x, y, args.seeds))


if __name__ == "__main__":
    main()
