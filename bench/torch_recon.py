#!/usr/bin/python3
"""torch_recon.py — PyTorch's side of bench_recon.c and bench_pipeline.c: one APHQ-ViT block-reconstruction
iteration (specs/aphq-vit.md §2.9) of a vit-fmnist block (50 tokens, dim 96, 3 heads, MLP 384, batch 32), the
reference's recipe written plainly in torch, timed on this machine now:

    x    = where(U(0,1) < 0.5, X_q[idx], X_fp[idx])       QDrop on the block input (§2.9)
    yhat = block(x)   weights: AdaRound's soft rounding per output row, (clamp(floor(W/s) + h(α) + z, 0, Qmax)
                      − z)·s (§2.7); inputs of qkv, proj, fc1, fc2 per tensor and q, k, v, probs per head:
                      (clamp(round_ste(x/s) + round(z), 0, Qmax) − round(z))·s, each element kept float with
                      probability 0.5 (QDrop, §2.1)
    loss = 2·mean(H·(yhat − Y)²)/rec1 + 0.01·Σ(1 − |2h(α) − 1|^β)   (the importance map H, §3.3; §2.7)
    Adam on α (lr 1e-3) and on the scales (lr 4e-5, cosine)

    (the rounding term from 20 % of the iterations on, as the reference's loss_start: here on 4 steps in 5)

It is leaner than the reference's code (GoatWu/APHQ-ViT utils/block_recon.py): that code freezes nothing,
so its backward also computes gradients it never uses (weights, biases, LayerNorm, zero points, AdaRound's
scale), it zero-fills gradients instead of dropping them, and it pays nn.Module call overhead. So the
ratio it gives vitq is a lower bound of the ratio to the reference run on this same torch. Prints
`torch recon threads=1 ms_per_step=M openblas_threads=T core=NAME`: the median of REPS timings of STEPS
iterations, at 1 thread as the reference ran. Run by `make bench` from the repository root; optional
(skipped when torch is missing)."""
import ctypes
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("PyTorch: not installed, skipped")
    sys.exit(77)  # skipped, as the e2e scripts: bench_torch says no more

B, N, DIM, HEADS, MLP, BITS = 32, 50, 96, 3, 384, 4
STEPS, WARMUP, REPS, POOL = 40, 5, 3, 1024
QMAX = 2 ** BITS - 1
GAMMA, ZETA = -0.1, 1.1


def round_ste(x):
    return (x.round() - x).detach() + x


class ActQ:
    """Asymmetric uniform fake quant with a learnable scale (per tensor, or per head on dim 1) and QDrop."""

    def __init__(self, x, per_head):
        dims = (0, 2, 3) if per_head else tuple(range(x.dim()))
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        self.s = ((hi - lo) / QMAX).clamp_min(1e-8).requires_grad_()
        self.z = (-(lo / self.s)).round().detach()

    def __call__(self, x):
        q = (torch.clamp(round_ste(x / self.s) + self.z, 0, QMAX) - self.z) * self.s
        return torch.where(torch.rand_like(x) < 0.5, q, x)


class AdaRoundW:
    """A linear layer's weight with AdaRound's soft rounding, one (scale, zero point) per output row."""

    def __init__(self, w):
        lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
        self.w, self.s = w, ((hi - lo) / QMAX).clamp_min(1e-8)
        self.z = (-(lo / self.s)).round()
        frac = w / self.s - torch.floor(w / self.s)
        self.alpha = (-torch.log((ZETA - GAMMA) / (frac - GAMMA) - 1)).requires_grad_()

    def h(self):
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def __call__(self):
        return (torch.clamp(torch.floor(self.w / self.s) + self.h() + self.z, 0, QMAX) - self.z) * self.s


class QBlock:
    def __init__(self, x):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g) * 0.05
        self.ln = [(torch.ones(DIM), torch.zeros(DIM)) for _ in range(2)]
        self.b = {k: torch.zeros(o) for k, o in (("qkv", 3 * DIM), ("proj", DIM), ("fc1", MLP), ("fc2", DIM))}
        self.w = {k: AdaRoundW(r(o, i)) for k, o, i in
                  (("qkv", 3 * DIM, DIM), ("proj", DIM, DIM), ("fc1", MLP, DIM), ("fc2", DIM, MLP))}
        with torch.no_grad():  # initial scales from one float pass, as calibration would give
            self.aq = {}
            self.forward(x, init=True)

    def q(self, name, x, per_head=False, init=False):
        if init:
            self.aq[name] = ActQ(x, per_head)
            return x
        return self.aq[name](x)

    def lin(self, name, x, init):
        w = self.w[name].w if init else self.w[name]()
        return F.linear(self.q(name, x, init=init), w, self.b[name])

    def forward(self, x, init=False):
        b, n, c = x.shape
        d = c // HEADS
        h = F.layer_norm(x, (DIM,), *self.ln[0], eps=1e-6)
        qkv = self.lin("qkv", h, init).reshape(b, n, 3, HEADS, d).permute(2, 0, 3, 1, 4)
        q, k, v = (self.q(nm, t, True, init) for nm, t in zip("qkv", qkv.unbind(0)))
        att = self.q("probs", ((q @ k.transpose(-2, -1)) * d ** -0.5).softmax(dim=-1), True, init)
        x = x + self.lin("proj", (att @ v).transpose(1, 2).reshape(b, n, c), init)
        h = F.gelu(self.lin("fc1", F.layer_norm(x, (DIM,), *self.ln[1], eps=1e-6), init))
        return x + self.lin("fc2", h, init)

    def alphas(self):
        return [w.alpha for w in self.w.values()]

    def scales(self):
        return [a.s for a in self.aq.values()]


def openblas():
    """libopenblas as torch loaded it, or None: torch.set_num_threads does not reach its GEMMs' threads."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
    for path in sorted(p for p in paths if p.rsplit("/", 1)[-1].startswith("libopenblas")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "openblas_set_num_threads") and hasattr(lib, "openblas_get_num_threads"):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib
    return None


def ms_per_step(threads, blas):
    torch.set_num_threads(threads)
    if blas is not None:
        blas.openblas_set_num_threads(threads)
    torch.manual_seed(0)
    x_fp = torch.randn(POOL, N, DIM)
    x_q = x_fp + 0.01 * torch.randn(POOL, N, DIM)
    blk = QBlock(x_fp[:B])
    with torch.no_grad():
        y = x_fp + 0.1 * torch.randn(POOL, N, DIM)
    hmap = torch.rand(1, N, DIM) + 0.5
    opt_w = torch.optim.Adam(blk.alphas(), lr=1e-3)
    opt_a = torch.optim.Adam(blk.scales(), lr=4e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_a, T_max=2000, eta_min=0.0)
    rec1 = None
    for t in range(WARMUP + STEPS):
        if t == WARMUP:
            t0 = time.perf_counter()
        idx = torch.randperm(POOL)[:B]
        x = torch.where(torch.rand(B, N, DIM) < 0.5, x_q[idx], x_fp[idx])
        rec = (hmap * (blk.forward(x) - y[idx]) ** 2).mean()
        rec1 = rec.detach() if rec1 is None else rec1
        loss = 2 * rec / rec1
        if t % 5:  # the rounding term, annealed β, on 80 % of the iterations (loss_start = 20 %)
            beta = 20 - 18 * t / (WARMUP + STEPS)
            loss = loss + 0.01 * sum((1 - (2 * w.h() - 1).abs().pow(beta)).sum() for w in blk.w.values())
        opt_w.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_a.step()
        sched.step()
    return (time.perf_counter() - t0) / STEPS * 1e3


if __name__ == "__main__":
    lib = openblas()
    ms = sorted(ms_per_step(1, lib) for _ in range(REPS))[REPS // 2]
    where = ("openblas_threads=%d core=%s" % (lib.openblas_get_num_threads(), lib.openblas_get_corename().decode())
             if lib else "openblas_threads=? (torch's BLAS is not OpenBLAS: its threads are not set)")
    print("torch recon threads=1 ms_per_step=%.2f %s" % (ms, where), flush=True)
