"""Hints for common mistakes (issue 23): each lab's table of plausible wrong answers -- each one
tried -- and the hint its check must give, graded by the course grader.

A submission carries one mistake per answer (the i-th row of every answer's list), so three
submissions per lab cover three mistakes of each answer.  The hint is looked for in the check's
reason in the gradebook, which is also what the student's feedback file shows.
"""
from __future__ import annotations

import nbformat
import pytest

from test_grading import CANNOT_GRADE, ROOT, submit
from utils import grading, labs

HINTS = {   # lab -> answer -> [(the answer's code, words its check must say)]
    "00_start_here_lab": {
        "test_accuracy": [
            ("""def test_accuracy(model, images, labels, batch_size=500):
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size])
            correct = (logits.argmax(1) == labels[start:start + batch_size]).sum().item()
    return correct / len(images)""", "only one batch was counted"),
            ("""def test_accuracy(model, images, labels, batch_size=500):
    with torch.no_grad():
        return sum((model(images[s:s + batch_size]).max(1).values
                    == labels[s:s + batch_size]).sum().item()
                   for s in range(0, len(images), batch_size)) / len(images)""",
             "index of the largest logit (argmax)"),
            ("""def test_accuracy(model, images, labels, batch_size=500):
    with torch.no_grad():
        return sum((model(images[s:s + batch_size]).argmax(1)
                    == labels[s:s + batch_size]).sum().item()
                   for s in range(0, len(images), batch_size)) / batch_size""",
             "not by the number of batches or the batch size"),
        ],
        "confusion_matrix": [
            ("""def confusion_matrix(model, images, labels, num_classes=10):
    with torch.no_grad():
        p = model(images).argmax(1)
    return torch.bincount(p * num_classes + labels, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)""", "rows are true classes"),
            ("""def confusion_matrix(model, images, labels, num_classes=10):
    with torch.no_grad():
        p = model(images).argmax(1)
    C = torch.zeros(num_classes, num_classes)
    for t, q in zip(labels.tolist(), p.tolist()):
        C[t, q] += 1
    return C""", "counts are integers"),
            ("""def confusion_matrix(model, images, labels, num_classes=10):
    with torch.no_grad():
        p = model(images[:5000]).argmax(1)
    return torch.bincount(labels[:5000] * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)""", "every image is counted once"),
        ],
        "most_confused": [
            ("""def most_confused(C):
    off = C.clone()
    off.fill_diagonal_(-1)
    flat = int(off.argmax())
    return flat % C.shape[1], flat // C.shape[1]""", "you returned (column, row)"),
            ("""def most_confused(C):
    flat = int(C.argmax())
    return flat // C.shape[1], flat % C.shape[1]""", "the diagonal holds the correct predictions"),
            ("""def most_confused(C):
    off = C.clone()
    off.fill_diagonal_(-1)
    flat = off.argmax()
    return flat // C.shape[1], flat % C.shape[1]""", "return two Python ints"),
        ],
    },
    "01_adversarial_examples_lab": {
        "fgm_l2": [
            ("""def fgm_l2(model, x, y, eps):
    x_var = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
    return (x + eps * g.sign()).clamp(0, 1).detach()""", "a sign step (FGSM, L-inf)"),
            ("""def fgm_l2(model, x, y, eps):
    x_var = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
    return (x + eps * g / g.norm().clamp_min(1e-12)).clamp(0, 1).detach()""",
             "the whole batch's gradient"),
            ("""def fgm_l2(model, x, y, eps):
    x_var = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
    length = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (x - eps * g / length).clamp(0, 1).detach()""",
             "the loss of the true labels went DOWN"),
        ],
        "pgd": [
            ("""def pgd(model, x, y, eps, alpha, steps, random_start=True, generator=None):
    x_adv = x.clone()
    if random_start:
        where = generator.device if generator is not None else x.device
        noise = (2 * torch.rand(x.shape, generator=generator, device=where) - 1) * eps
        x_adv = (x + noise.to(x.device)).clamp(0, 1)
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
        step = (alpha * grad.sign()).clamp(-eps, eps)
        x_adv = (x_adv + step).clamp(0, 1)
    return x_adv.detach()""", "project the total change"),
            ("""def pgd(model, x, y, eps, alpha, steps, random_start=True, generator=None):
    x_adv = x.clone()
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
        x_adv = x_adv + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()""", "the random start is missing"),
            ("""def pgd(model, x, y, eps, alpha, steps, random_start=True, generator=None):
    x_adv = x.clone()
    if random_start:
        where = generator.device if generator is not None else x.device
        noise = (2 * torch.rand(x.shape, generator=generator, device=where) - 1) * eps
        x_adv = (x + noise.to(x.device)).clamp(0, 1)
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
        x_adv = x_adv - alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()""", "untargeted PGD steps UP"),
        ],
        "pgd_targeted": [
            ("""def pgd_targeted(model, x, target, eps, alpha, steps):
    x_adv = x.clone()
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), target), x_var)
        x_adv = x_adv + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()""", "you stepped UP the target's loss"),
            ("""def pgd_targeted(model, x, target, eps, alpha, steps):
    x_adv = (x + (2 * torch.rand_like(x) - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), target), x_var)
        x_adv = x_adv - alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()""", "no random start"),
            ("""def pgd_targeted(model, x, target, eps, alpha, steps):
    x_adv = x.clone()
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), target), x_var)
        x_adv = (x_adv - alpha * grad.sign()).clamp(0, 1)
    return x_adv.detach()""", "the change from the ORIGINAL x"),
        ],
        "accuracy_curve": [
            ("""def accuracy_curve(model, x, y, attack, eps_values):
    return [accuracy_on(model, x, y) for eps in eps_values]""",
             "every eps gives the same accuracy"),
            ("""def accuracy_curve(model, x, y, attack, eps_values):
    return [1 - accuracy_on(model, attack(model, x, y, eps), y) for eps in eps_values]""",
             "the error rate"),
            ("""def accuracy_curve(model, x, y, attack, eps_values):
    with torch.no_grad():
        clean = model(x).argmax(1)
    return [accuracy_on(model, attack(model, x, y, eps), clean) for eps in eps_values]""",
             "not with the labels y"),
        ],
    },
    "02_fooling_noise_captum_lab": {
        "ig_multi_baseline": [
            ("""def ig_multi_baseline(model, x, target, baselines, steps):
    model.eval()
    result = torch.zeros_like(x)
    for reference in baselines:
        start = reference.expand_as(x)
        for j in range(1, steps + 1):
            point = (start + (x - start) * (j / steps)).requires_grad_(True)
            score = model(point).gather(1, target.view(-1, 1)).sum()
            result += torch.autograd.grad(score, point)[0] / steps
    return (result / len(baselines)).detach()""", "the factor (x - x'_k) is missing"),
            ("""def ig_multi_baseline(model, x, target, baselines, steps):
    model.eval()
    result = torch.zeros_like(x)
    for reference in baselines:
        start = reference.expand_as(x)
        summed = torch.zeros_like(x)
        for j in range(steps):
            point = (start + (x - start) * (j / steps)).requires_grad_(True)
            score = model(point).gather(1, target.view(-1, 1)).sum()
            summed += torch.autograd.grad(score, point)[0]
        result += (x - start) * summed / steps
    return (result / len(baselines)).detach()""", "off by one"),
            ("""def ig_multi_baseline(model, x, target, baselines, steps):
    model.eval()
    start = baselines.mean(0, keepdim=True).expand_as(x)
    summed = torch.zeros_like(x)
    for j in range(1, steps + 1):
        point = (start + (x - start) * (j / steps)).requires_grad_(True)
        score = model(point).gather(1, target.view(-1, 1)).sum()
        summed += torch.autograd.grad(score, point)[0]
    return ((x - start) * summed / steps).detach()""", "averaged the K baselines into one image"),
        ],
        "occlusion_probability": [
            ("""def occlusion_probability(model, x, target, window, stride, baseline):
    model.eval()
    (h, w), (sy, sx) = window, stride
    acc, hits = torch.zeros_like(x), torch.zeros_like(x)
    pick = target.view(-1, 1)
    with torch.no_grad():
        clean = model(x).gather(1, pick)[:, 0]
        for top in range(0, 28 - h + 1, sy):
            for left in range(0, 28 - w + 1, sx):
                rows, cols = slice(top, top + h), slice(left, left + w)
                hidden = x.clone()
                hidden[..., rows, cols] = baseline[..., rows, cols]
                drop = clean - model(hidden).gather(1, pick)[:, 0]
                acc[..., rows, cols] += drop.view(-1, 1, 1, 1)
                hits[..., rows, cols] += 1
    return acc / hits""", "the drop of the LOGIT"),
            ("""def occlusion_probability(model, x, target, window, stride, baseline):
    model.eval()
    (w, h), (sx, sy) = window, stride
    acc, hits = torch.zeros_like(x), torch.zeros_like(x)
    pick = target.view(-1, 1)
    with torch.no_grad():
        clean = F.softmax(model(x), dim=1).gather(1, pick)[:, 0]
        for top in range(0, 28 - h + 1, sy):
            for left in range(0, 28 - w + 1, sx):
                rows, cols = slice(top, top + h), slice(left, left + w)
                hidden = x.clone()
                hidden[..., rows, cols] = baseline[..., rows, cols]
                drop = clean - F.softmax(model(hidden), dim=1).gather(1, pick)[:, 0]
                acc[..., rows, cols] += drop.view(-1, 1, 1, 1)
                hits[..., rows, cols] += 1
    return acc / hits""", "height and width are swapped"),
            ("""def occlusion_probability(model, x, target, window, stride, baseline):
    model.eval()
    (h, w), (sy, sx) = window, stride
    acc = torch.zeros_like(x)
    pick = target.view(-1, 1)
    with torch.no_grad():
        clean = F.softmax(model(x), dim=1).gather(1, pick)[:, 0]
        for top in range(0, 28 - h + 1, sy):
            for left in range(0, 28 - w + 1, sx):
                rows, cols = slice(top, top + h), slice(left, left + w)
                hidden = x.clone()
                hidden[..., rows, cols] = baseline[..., rows, cols]
                drop = clean - F.softmax(model(hidden), dim=1).gather(1, pick)[:, 0]
                acc[..., rows, cols] += drop.view(-1, 1, 1, 1)
    return acc""", "the SUM of their drops"),
        ],
        "fooling_image": [
            ("""def fooling_image(model, target_class, steps=150, lr=0.1, seed=0):
    model.eval()
    device = next(model.parameters()).device
    image = data.to_tensor(data.noise_images(1, seed=seed), device=device).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    for _ in range(steps):
        loss = F.log_softmax(model(image), dim=1)[0, target_class]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
    return image.detach()""", "the target's probability FELL"),
            ("""def fooling_image(model, target_class, steps=150, lr=0.1, seed=0):
    model.eval()
    device = next(model.parameters()).device
    image = data.to_tensor(data.noise_images(1, seed=seed), device=device).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    for _ in range(steps):
        loss = -F.log_softmax(model(image), dim=1)[0, target_class]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return image.detach()""", "clamp it in place"),
            ("""def fooling_image(model, target_class, steps=150, lr=0.1, seed=0):
    model.eval()
    device = next(model.parameters()).device
    image = data.to_tensor(data.noise_images(1, seed=seed), device=device).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    for _ in range(steps):
        loss = -F.log_softmax(model(image), dim=1)[0, target_class]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        image = image.clamp(0, 1).detach().requires_grad_(True)
    return image.detach()""", "the image stopped changing after the first step"),
        ],
    },
    "03_face_attack_competition_lab": {
        "pair_score": [
            ("""def pair_score(blackbox, adversarial, targets):
    a = torch.from_numpy(blackbox.query(adversarial))
    t = torch.from_numpy(blackbox.query(targets))
    return float((a - t).norm(dim=1).mean())""", "only the 5 matched pairs"),
            ("""def pair_score(blackbox, adversarial, targets):
    a = torch.from_numpy(blackbox.query(adversarial))
    t = torch.from_numpy(blackbox.query(targets))
    return float((torch.cdist(a, t) ** 2).mean())""", "not its square"),
            ("""def pair_score(blackbox, adversarial, targets):
    a = torch.from_numpy(blackbox.query(faces.to_uint8(adversarial).float() / 255))
    t = torch.from_numpy(blackbox.query(targets))
    return float(torch.cdist(a, t).mean())""", "you rounded the images"),
        ],
        "attack": [
            ("""def attack(blackbox, sources, targets):
    target_desc = faces.query_tensor(blackbox, targets)
    x = sources.clone()
    for _ in range(4):
        x_var = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.cdist(students[0](x_var), target_desc).mean(), x_var)
        x = (x - 8 / 255 * g.sign()).clamp(0, 1)
    return faces.to_uint8(x).float() / 255""", "project each step back with faces.project_ssim"),
            ("""def attack(blackbox, sources, targets):
    target_desc = faces.query_tensor(blackbox, targets)
    x0 = faces.to_uint8(sources).float() / 255
    x = x0.clone()
    for _ in range(4):
        x_var = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.cdist(students[0](x_var), target_desc).mean(), x_var)
        x = faces.project_ssim((x + 2 / 255 * g.sign()).clamp(0, 1), x0)
        x = faces.to_uint8(x).float() / 255
    return x""", "farther from the targets than the untouched sources"),
            ("""def attack(blackbox, sources, targets):
    target_desc = faces.query_tensor(blackbox, targets)
    x_var = sources.clone().requires_grad_(True)
    loss = torch.cdist(faces.query_tensor(blackbox, x_var), target_desc).mean()
    (g,) = torch.autograd.grad(loss, x_var)
    return faces.project_ssim((sources - 2 / 255 * g.sign()).clamp(0, 1), sources)""",
             "take the gradient through the students"),
        ],
        "closing_answer": [
            ('closing_answer = "FGVM steps on a blurred gradient, projected on the SSIM rule."',
             "40 words or more"),
            ("""closing_answer = [
    "My attack uses FGVM steps on the summed gradient of the three students and the L2 student.",
    "The gradient is blurred over 5 pixels, so that SSIM hardly sees the change.",
    "Every step is projected back onto the SSIM rule and kept only if the black box agrees.",
]""", "join them into one string"),
            ('''print("""My attack uses FGVM steps on the summed gradient of four
students, blurred over five pixels so that SSIM hardly sees the change; every step is projected
back onto the rule and kept only if the black box agrees, and a step size halved three times
starts again. On the validation pair sets this beats the lecture's pipeline by a little.""")''',
             "assign your text to the name closing_answer"),
        ],
    },
    "04_domain_adaptation_lab": {
        "grad_scale": [
            ("""class GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, forward_scale, backward_scale):
        ctx.backward_scale = backward_scale
        return x * forward_scale

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.backward_scale


def grad_reverse(x, lambda_=1.0):
    return GradScale.apply(x, 1.0, -lambda_)""", "one entry per input of forward"),
            ("""class GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, forward_scale, backward_scale):
        ctx.backward_scale = backward_scale
        return x * forward_scale

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.backward_scale, None, None


def grad_reverse(x, lambda_=1.0):
    return GradScale.apply(x, 1.0, lambda_)""", "grad_reverse does not negate"),
            ("""class GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, forward_scale, backward_scale):
        ctx.backward_scale = backward_scale
        return x * backward_scale

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.backward_scale, None, None


def grad_reverse(x, lambda_=1.0):
    return GradScale.apply(x, 1.0, -lambda_)""", "forward multiplied by backward_scale"),
        ],
        "dann_step": [
            ("""def dann_step(model, source_x, source_y, target_x, *, lambda_, lr,
              domain_weights=(0.5, 0.5)):
    net = copy.deepcopy(model).train()
    n = len(source_x)
    z = net.features(torch.cat([source_x, target_x]))
    label_loss = F.cross_entropy(net.classifier(z[:n]), source_y)
    d = net.domain((1 + lambda_) * z.detach() - lambda_ * z).squeeze(1)   # a reversal, inline
    w_s, w_t = domain_weights
    domain_loss = (w_s * F.binary_cross_entropy_with_logits(d[:n], torch.ones(n))
                   + w_t * F.binary_cross_entropy_with_logits(d[n:], torch.zeros(len(d) - n)))
    optimiser = torch.optim.SGD(net.parameters(), lr=lr)
    optimiser.zero_grad()
    (label_loss + domain_loss).backward()
    optimiser.step()
    return {"label_loss": label_loss.detach(), "domain_loss": domain_loss.detach(),
            "state": {k: v.detach() for k, v in net.state_dict().items()}}""",
             "domain labels are swapped"),
            ("""def dann_step(model, source_x, source_y, target_x, *, lambda_, lr,
              domain_weights=(0.5, 0.5)):
    net = copy.deepcopy(model).train()
    n = len(source_x)
    z = net.features(torch.cat([source_x, target_x]))
    label_loss = F.cross_entropy(net.classifier(z[:n]), source_y)
    d = net.domain((1 + lambda_) * z.detach() - lambda_ * z).squeeze(1)
    is_target = torch.cat([torch.zeros(n), torch.ones(len(d) - n)])
    domain_loss = F.binary_cross_entropy_with_logits(d, is_target)
    optimiser = torch.optim.SGD(net.parameters(), lr=lr)
    optimiser.zero_grad()
    (label_loss + domain_loss).backward()
    optimiser.step()
    return {"label_loss": label_loss.detach(), "domain_loss": domain_loss.detach(),
            "state": {k: v.detach() for k, v in net.state_dict().items()}}""",
             "plain mean over all"),
            ("""def dann_step(model, source_x, source_y, target_x, *, lambda_, lr,
              domain_weights=(0.5, 0.5)):
    net = copy.deepcopy(model).train()
    n = len(source_x)
    z = torch.cat([net.features(source_x), net.features(target_x)])
    label_loss = F.cross_entropy(net.classifier(z[:n]), source_y)
    d = net.domain((1 + lambda_) * z.detach() - lambda_ * z).squeeze(1)
    w_s, w_t = domain_weights
    domain_loss = (w_s * F.binary_cross_entropy_with_logits(d[:n], torch.zeros(n))
                   + w_t * F.binary_cross_entropy_with_logits(d[n:], torch.ones(len(d) - n)))
    optimiser = torch.optim.SGD(net.parameters(), lr=lr)
    optimiser.zero_grad()
    (label_loss + domain_loss).backward()
    optimiser.step()
    return {"label_loss": label_loss.detach(), "domain_loss": domain_loss.detach(),
            "state": {k: v.detach() for k, v in net.state_dict().items()}}""",
             "went through the features in two passes"),
        ],
        "schedules": [
            ("""def lambda_schedule(p):
    if not 0 <= p <= 1:
        raise ValueError(p)
    return 2 / (1 + math.exp(-p)) - 1


def lr_schedule(p, mu0):
    if not 0 <= p <= 1:
        raise ValueError(p)
    return mu0 / (1 + 10 * p) ** 0.75""", "your lambda_p fits gamma = 1"),
            ("""def lambda_schedule(p):
    if not 0 <= p <= 1:
        raise ValueError(p)
    return 2 / (1 + math.exp(-10 * p)) - 1


def lr_schedule(p, mu0):
    if not 0 <= p <= 1:
        raise ValueError(p)
    return mu0 / math.sqrt(1 + 10 * p)""", "fits beta = 0.5 with alpha = 10"),
            ("""def lambda_schedule(p):
    p = min(max(p, 0.0), 1.0)
    return 2 / (1 + math.exp(-10 * p)) - 1


def lr_schedule(p, mu0):
    p = min(max(p, 0.0), 1.0)
    return mu0 / (1 + 10 * p) ** 0.75""", "raise ValueError, do not clamp"),
        ],
        "train_dann": [
            ("""def train_dann(init_state, source_x, source_y, target_x, *, batch_size, lr):
    net = models.small_dann_net()
    net.load_state_dict(init_state)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    steps, n = len(source_x) // batch_size, batch_size
    for k in range(steps):
        p = k / steps
        lam = 2 / (1 + math.exp(-10 * p)) - 1
        for group in optimiser.param_groups:
            group["lr"] = lr / (1 + 10 * p) ** 0.75
        rows = slice(k * n, (k + 1) * n)
        z = net.train().features(torch.cat([source_x[rows], target_x[rows]]))
        label_loss = F.cross_entropy(net.classifier(z[:n]), source_y[rows])
        d = net.domain((1 + lam) * z.detach() - lam * z).squeeze(1)
        domain_loss = (0.5 * F.binary_cross_entropy_with_logits(d[:n], torch.zeros(n))
                       + 0.5 * F.binary_cross_entropy_with_logits(d[n:], torch.ones(n)))
        (label_loss + domain_loss).backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}""",
             "the gradients piled up over the steps"),
            ("""def train_dann(init_state, source_x, source_y, target_x, *, batch_size, lr):
    net = models.small_dann_net()
    net.load_state_dict(init_state)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    steps, n = len(source_x) // batch_size, batch_size
    for k in range(steps):
        p = (k + 1) / steps
        lam = 2 / (1 + math.exp(-10 * p)) - 1
        for group in optimiser.param_groups:
            group["lr"] = lr / (1 + 10 * p) ** 0.75
        rows = slice(k * n, (k + 1) * n)
        z = net.train().features(torch.cat([source_x[rows], target_x[rows]]))
        label_loss = F.cross_entropy(net.classifier(z[:n]), source_y[rows])
        d = net.domain((1 + lam) * z.detach() - lam * z).squeeze(1)
        domain_loss = (0.5 * F.binary_cross_entropy_with_logits(d[:n], torch.zeros(n))
                       + 0.5 * F.binary_cross_entropy_with_logits(d[n:], torch.ones(n)))
        optimiser.zero_grad()
        (label_loss + domain_loss).backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}""",
             "progress is off by one step"),
            ("""def train_dann(init_state, source_x, source_y, target_x, *, batch_size, lr):
    net = models.small_dann_net()
    net.load_state_dict(init_state)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    steps, n = len(source_x) // batch_size, batch_size
    for k in range(steps):
        p = k / steps
        lam = 2 / (1 + math.exp(-10 * p)) - 1
        rows = slice(k * n, (k + 1) * n)
        z = net.train().features(torch.cat([source_x[rows], target_x[rows]]))
        label_loss = F.cross_entropy(net.classifier(z[:n]), source_y[rows])
        d = net.domain((1 + lam) * z.detach() - lam * z).squeeze(1)
        domain_loss = (0.5 * F.binary_cross_entropy_with_logits(d[:n], torch.zeros(n))
                       + 0.5 * F.binary_cross_entropy_with_logits(d[n:], torch.ones(n)))
        optimiser.zero_grad()
        (label_loss + domain_loss).backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}""",
             "the learning rate stayed at mu_0"),
        ],
    },
    "05_gans_lab": {
        "discriminator_loss": [
            ("""def discriminator_loss(real_scores, fake_scores):
    return F.relu(1 - real_scores).mean() + F.relu(1 - fake_scores).mean()""",
             "the sign of the fake scores is flipped"),
            ("""def discriminator_loss(real_scores, fake_scores):
    return F.relu(torch.cat([1 - real_scores.flatten(), 1 + fake_scores.flatten()])).mean()""",
             "average each term over its own batch"),
            ("""def discriminator_loss(real_scores, fake_scores):
    return (1 - real_scores).mean() + (1 + fake_scores).mean()""",
             "no max(0, ...)"),
        ],
        "generator_loss": [
            ("""def generator_loss(fake_scores):
    return fake_scores.mean()""", "G wants high scores"),
            ("""def generator_loss(fake_scores):
    return F.relu(1 - fake_scores).mean()""", "G's hinge loss has no margin"),
            ("""def generator_loss(fake_scores):
    return -fake_scores.sum()""", "a sum, not a mean"),
        ],
        "d_step": [   # each writes the hinge loss out: the submission's discriminator_loss is wrong
            ("""def d_step(G, D, opt_D, real, z):
    G.train(), D.train()
    with torch.no_grad():
        fake = G(z)
    scores = D(torch.cat([real, fake]))
    r, f = scores[:len(real)], scores[len(real):]
    loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
    inside = torch.cat([r < 1, f > -1]).float().mean()
    opt_D.zero_grad()
    loss.backward()
    opt_D.step()
    return {"loss": loss.detach(), "inside": inside.detach()}""", "one concatenated call"),
            ("""def d_step(G, D, opt_D, real, z):
    with torch.no_grad():
        fake = G(z)
    r, f = D(real), D(fake)
    loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
    inside = torch.cat([r < 1, f > -1]).float().mean()
    opt_D.zero_grad()
    loss.backward()
    opt_D.step()
    return {"loss": loss.detach(), "inside": inside.detach()}""",
             "both networks stayed in eval mode"),
            ("""def d_step(G, D, opt_D, real, z):
    G.train(), D.train()
    with torch.no_grad():
        fake = G(z)
    opt_D.zero_grad()
    (F.relu(1 - D(real)).mean() + F.relu(1 + D(fake)).mean()).backward()
    opt_D.step()
    r, f = D(real), D(fake)
    loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
    inside = torch.cat([r < 1, f > -1]).float().mean()
    return {"loss": loss.detach(), "inside": inside.detach()}""",
             "this is the loss after opt_D.step()"),
        ],
        "g_step": [
            ("""def g_step(G, D, opt_G, z):
    G.train(), D.eval()                      # "freezing" D
    loss = -D(G(z)).mean()
    opt_G.zero_grad()
    loss.backward(inputs=list(G.parameters()))
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in G.parameters()))
    opt_G.step()
    return {"loss": loss.detach(), "grad_norm": norm.detach()}""", "D is in eval mode"),
            ("""def g_step(G, D, opt_G, z):
    G.train(), D.train()
    opt_G.zero_grad()
    (-D(G(z)).mean()).backward(inputs=list(G.parameters()))
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in G.parameters()))
    opt_G.step()
    loss = -D(G(z)).mean()
    return {"loss": loss.detach(), "grad_norm": norm.detach()}""",
             "this is the loss after opt_G.step()"),
            ("""def g_step(G, D, opt_G, z):
    G.train(), D.train()
    loss = -D(G(z)).mean()
    opt_G.zero_grad()
    loss.backward(inputs=list(G.parameters()))
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in G.parameters()))
    opt_G.step()
    G(z)                                     # a look at the new samples, in train mode
    return {"loss": loss.detach(), "grad_norm": norm.detach()}""",
             "G ran more or fewer than one forward pass"),
        ],
        "train_gan": [
            ("""def train_gan(steps, *, seed=0, lr=1e-3, batch_size=64):
    torch.manual_seed(seed)
    pair = models.small_dcgan().to(device)
    G, D = pair.generator, pair.discriminator
    opt_G, opt_D = adam(G, lr), adam(D, lr)
    codes = torch.Generator(device=device).manual_seed(seed)

    def step(batch, p):
        real = batch
        d = d_step(G, D, opt_D, real, models.latent(len(real), 32, generator=codes, device=device))
        g = g_step(G, D, opt_G, models.latent(len(real), 32, generator=codes, device=device))
        return {"loss_d": d["loss"], "loss_g": g["loss"]}

    fit(step, Batches(train_x, batch_size=batch_size, seed=seed, drop_last=True), steps=steps)
    return state_of(G)""", "Batches(train_x) yields 1-tuples"),
            ("""def train_gan(steps, *, seed=0, lr=1e-3, batch_size=64):
    torch.manual_seed(seed)
    pair = models.small_dcgan().to(device)
    G, D = pair.generator, pair.discriminator
    opt_G, opt_D = adam(G, lr), adam(D, lr)
    codes = torch.Generator(device=device).manual_seed(seed)

    def step(batch, p):
        real = batch[0]
        g = g_step(G, D, opt_G, models.latent(len(real), 32, generator=codes, device=device))
        d = d_step(G, D, opt_D, real, models.latent(len(real), 32, generator=codes, device=device))
        return {"loss_d": d["loss"], "loss_g": g["loss"]}

    fit(step, Batches(train_x, batch_size=batch_size, seed=seed, drop_last=True), steps=steps)
    return state_of(G)""", "must call d_step, then g_step"),
            ("""def train_gan(steps, *, seed=0, lr=1e-3, batch_size=64):
    torch.manual_seed(seed)
    pair = models.small_dcgan().to(device)
    G, D = pair.generator, pair.discriminator
    opt_G, opt_D = adam(G, lr), adam(D, lr)
    codes = torch.Generator(device=device).manual_seed(seed)
    state = state_of(G)

    def step(batch, p):
        real = batch[0]
        d = d_step(G, D, opt_D, real, models.latent(len(real), 32, generator=codes, device=device))
        g = g_step(G, D, opt_G, models.latent(len(real), 32, generator=codes, device=device))
        return {"loss_d": d["loss"], "loss_g": g["loss"]}

    fit(step, Batches(train_x, batch_size=batch_size, seed=seed, drop_last=True), steps=steps)
    return state""", "the state before training"),
        ],
    },
    "06_invertible_networks_lab": {
        "affine_coupling": [
            ("""def affine_coupling(F, G, x1, x2):
    s1, t1 = F(x2)
    y1 = x1 * torch.exp(s1) + t1
    s2, t2 = G(y1)
    y2 = x2 * torch.exp(s2) + t2
    return y1, y2, s1.sum() + s2.sum()""", "and not over the batch"),
            ("""def affine_coupling(F, G, x1, x2):
    s1, t1 = F(x2)
    y1 = x1 * torch.exp(s1) + t1
    s2, t2 = G(y1)
    y2 = x2 * torch.exp(s2) + t2
    return y1, y2, s1.flatten(1).sum(1)""",
             "the second step's log-scales (s2, from G) are missing"),
            ("""def affine_coupling(F, G, x1, x2):
    s1, t1 = F(x2)
    y1 = x1 * torch.exp(s1) + t1
    s2, t2 = G(x1)
    y2 = x2 * torch.exp(s2) + t2
    return y1, y2, s1.flatten(1).sum(1) + s2.flatten(1).sum(1)""", "yours used G(x1)"),
        ],
        "affine_coupling_inverse": [
            ("""def affine_coupling_inverse(F, G, y1, y2):
    s1, t1 = F(y2)
    x1 = (y1 - t1) * torch.exp(-s1)
    s2, t2 = G(x1)
    x2 = (y2 - t2) * torch.exp(-s2)
    return x1, x2""", "you called F on y2"),
            ("""def affine_coupling_inverse(F, G, y1, y2):
    s2, t2 = G(y1)
    x2 = (y2 - t2) * torch.exp(s2)
    s1, t1 = F(x2)
    x1 = (y1 - t1) * torch.exp(s1)
    return x1, x2""", "blocks that only scale are not undone"),
            ("""def affine_coupling_inverse(F, G, y1, y2):
    s2, t2 = G(y1)
    x2 = y2 * torch.exp(-s2) - t2
    s1, t1 = F(x2)
    x1 = y1 * torch.exp(-s1) - t1
    return x1, x2""", "undo the shift first"),
        ],
        "worst_reconstructions": [
            ("""def worst_reconstructions(net, images, k=5, batch_size=1000):
    was_training = net.training
    net.eval()
    with torch.no_grad():
        per_image = []
        for chunk in images.split(batch_size):
            z = net.encode(chunk)
            per_image.append((z.half().to(chunk.dtype) - z).flatten(1).norm(dim=1))
        per_image = torch.cat(per_image)
    net.train(was_training)
    errors, indices = per_image.topk(k)
    return indices, errors""", "rounding errors of the CODE"),
            ("""def worst_reconstructions(net, images, k=5, batch_size=1000):
    was_training = net.training
    net.eval()
    best_e, best_i = None, None
    with torch.no_grad():
        for chunk in images.split(batch_size):
            back = net.inverse(net.encode(chunk).half().to(chunk.dtype))
            e = (back - chunk).flatten(1).norm(dim=1)
            top = e.topk(min(k, len(e)))
            if best_e is None:
                best_e, best_i = top.values, top.indices
            else:
                both_e = torch.cat([best_e, top.values]); both_i = torch.cat([best_i, top.indices])
                keep = both_e.topk(k).indices
                best_e, best_i = both_e[keep], both_i[keep]
    net.train(was_training)
    return best_i, best_e""", "every index is below batch_size"),
            ("""def worst_reconstructions(net, images, k=5, batch_size=1000):
    was_training = net.training
    net.eval()
    with torch.no_grad():
        per_image = []
        for chunk in images.split(batch_size):
            back = net.inverse(net.encode(chunk).half().float())
            per_image.append((back - chunk).flatten(1).norm(dim=1))
        per_image = torch.cat(per_image)
    net.train(was_training)
    errors, indices = per_image.topk(k)
    return indices, errors""", "convert the float16 code back to the IMAGES' dtype"),
        ],
        "box_metamers": [
            ("""def box_metamers(net, images_a, images_b, rounds=2):
    was_training = net.training
    net.eval()
    with torch.no_grad():
        logits = net.split(net.encode(images_a))[0]
        m = net.inverse(net.merge(logits, net.split(net.encode(images_b))[1]))
        for _ in range(rounds):
            m = net.inverse(net.merge(logits, net.split(net.encode(m.clamp(0, 1)))[1]))
    net.train(was_training)
    return m""", "after the last round too"),
            ("""def box_metamers(net, images_a, images_b, rounds=2):
    was_training = net.training
    net.eval()
    with torch.no_grad():
        logits = net.split(net.encode(images_a))[0]
        nuisance = net.split(net.encode(images_b))[1]
        m = net.inverse(net.merge(logits, nuisance))
        for _ in range(rounds):
            m = net.inverse(net.merge(logits, nuisance)).clamp(0, 1)
    net.train(was_training)
    return m.clamp(0, 1)""", "3 rounds give the same images as 0 rounds"),
            ("""def box_metamers(net, images_a, images_b, rounds=2):
    was_training = net.training
    net.eval()
    with torch.no_grad():
        logits = net.split(net.encode(images_b))[0]
        m = net.inverse(net.merge(logits, net.split(net.encode(images_a))[1]))
        for _ in range(rounds):
            m = net.inverse(net.merge(logits, net.split(net.encode(m.clamp(0, 1)))[1]))
    net.train(was_training)
    return m.clamp(0, 1)""", "reads your metamers as B"),
        ],
    },
    "07_evaluating_robustness_lab": {
        "apgd_checkpoints": [
            ("""def apgd_checkpoints(steps):
    first, shrink, floor = (max(int(0.22 * steps), 1), max(int(0.03 * steps), 1),
                            max(int(0.06 * steps), 1))
    out, at, interval = [], 0, first
    while at + interval <= steps:
        at += interval
        out.append(interval)
        interval = max(interval - shrink, floor)
    return out""", "running sum of the intervals"),
            ("""def apgd_checkpoints(steps):
    if steps == 0:
        return []
    first, shrink, floor = (max(int(0.22 * steps), 1), max(int(0.03 * steps), 1),
                            max(int(0.06 * steps), 1))
    out, at, interval = [0], 0, first
    while at + interval <= steps:
        at += interval
        out.append(at)
        interval = max(interval - shrink, floor)
    return out""", "not a checkpoint: leave 0 out"),
            ("""def apgd_checkpoints(steps):
    p, previous, out = 0.22, 0.0, []
    while steps and math.ceil(p * steps) <= steps:
        out.append(math.ceil(p * steps))
        p, previous = p + max(p - previous - 0.03, 0.06), p
    return out""", "count whole iterations"),
        ],
        "hoeffding_radius": [
            ("""def hoeffding_radius(k, n, sigma, alpha):
    lower = k / n - math.sqrt(math.log(1 / alpha) / (2 * n))
    return float(sigma * NormalDist().inv_cdf(lower))""", "abstain with 0.0"),
            ("""def hoeffding_radius(k, n, sigma, alpha):
    lower = min(k / n, 1 - 1e-12)
    return float(sigma * NormalDist().inv_cdf(lower)) if lower > 0.5 else 0.0""",
             "subtract Hoeffding's margin"),
            ("""def hoeffding_radius(k, n, sigma, alpha):
    lower = k / n - math.sqrt(math.log(2 / alpha) / n)
    return float(sigma * NormalDist().inv_cdf(lower)) if lower > 0.5 else 0.0""",
             "divided by 2n"),
        ],
        "predict_from_counts": [
            ("""def predict_from_counts(counts, alpha):
    top = counts.topk(2, dim=1)
    out = []
    for (a, b), label in zip(top.values.tolist(), top.indices[:, 0].tolist()):
        tail = sum(math.comb(a + b, i) for i in range(a, a + b + 1)) / 2 ** (a + b)
        out.append(label if tail <= alpha else -1)
    return torch.tensor(out, dtype=torch.long, device=counts.device)""", "two-sided"),
            ("""def predict_from_counts(counts, alpha):
    top = counts.topk(2, dim=1)
    out = []
    for (a, b), label in zip(top.values.tolist(), top.indices[:, 0].tolist()):
        tail = sum(math.comb(a + b, i) for i in range(0, a + 1)) / 2 ** (a + b)
        out.append(label if min(1.0, 2 * tail) <= alpha else -1)
    return torch.tensor(out, dtype=torch.long, device=counts.device)""",
             "your p-values are too large"),
            ("""def predict_from_counts(counts, alpha):
    top = counts.topk(2, dim=1)
    out = []
    for row, a, label in zip(counts.tolist(), top.values[:, 0].tolist(),
                             top.indices[:, 0].tolist()):
        m = sum(row)
        tail = sum(math.comb(m, i) for i in range(a, m + 1)) / 2 ** m
        out.append(label if min(1.0, 2 * tail) <= alpha else -1)
    return torch.tensor(out, dtype=torch.long, device=counts.device)""", "not all n"),
        ],
    },
}

needs_grader = pytest.mark.skipif(bool(CANNOT_GRADE), reason=CANNOT_GRADE or "grader ready")


def mistaken(lab: str, row: int) -> nbformat.NotebookNode:
    """The handed-out lab with the ``row``-th mistake of every answer written in."""
    notebook = nbformat.read(ROOT / "labs" / f"{lab}.ipynb", as_version=4)
    for cell in notebook.cells:
        answer = labs.grading_info(cell).get("grade_id")
        if labs.is_answer(cell) and answer in HINTS[lab]:
            cell.source = HINTS[lab][answer][row][0]
    return notebook


def test_every_answer_of_a_hinted_lab_has_three_mistakes():
    for lab, answers in HINTS.items():
        solution = nbformat.read(ROOT / "solutions" / f"{lab}.ipynb", as_version=4)
        graded = {labs.grading_info(c)["grade_id"] for c in solution.cells if labs.is_answer(c)}
        assert set(answers) == graded, lab
        assert all(len(rows) >= 3 for rows in answers.values()), lab


@pytest.fixture(scope="module")
def hinted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hints")
    for lab in HINTS:
        for row in range(3):
            submit(folder, f"mistake{row}", lab, mistaken(lab, row))
    results = grading.grade([folder], timeout=600, cell_timeout=300, jobs=2, progress=False)
    print(grading.table(results))
    return {(r.student, r.lab): r for r in results}


CASES = [(lab, answer, row) for lab, answers in HINTS.items() for answer in answers
         for row in range(3)]


@needs_grader
@pytest.mark.parametrize("lab, answer, row", CASES,
                         ids=[f"{lab[:2]}-{answer}-{row}" for lab, answer, row in CASES])
def test_a_common_mistake_gets_its_hint(hinted, lab, answer, row):
    result = hinted[(f"mistake{row}", lab)]
    words = HINTS[lab][answer][row][1]
    [check] = [c for c in result.checks if c.grade_id == f"check_{answer}"]
    assert check.points == 0, f"{lab} {answer}: the mistake passed its check"
    assert words in check.reason, f"{lab} {answer}: expected a hint with {words!r}, got " \
                                  f"{check.reason!r}"
