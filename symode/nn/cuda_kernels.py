"""CUDA kernels of the layers' GPU path: im2col and its adjoint, and group normalization.

The CPU path runs numba ``njit`` loops (:mod:`symode.nn.conv`, :mod:`symode.nn.norm`); these are
their ``numba.cuda`` counterparts, launched on cupy arrays (or, under
``symode.backend.kernel_target("cuda")``, on numpy arrays in numba's CUDA simulator). They give
the CPU loops' results up to round-off. This module imports ``numba.cuda`` and is imported only
when a layer first takes its CUDA path.

* :func:`im2col` writes each entry of ``col`` from the unpadded image (zero outside it), and
  :func:`col2im` computes each pixel of ``x̄`` as a sum over the taps that saw it, in the CPU
  loop's order: a gather, so no atomics and deterministic sums.
* Group norm runs one block per (sample, group), with block-wide sums in shared memory; the
  parameter gradients are written per sample and summed over the batch by the caller.
"""

from __future__ import annotations

import math

import numba

from ..backend import launch, launch_blocks, numba_cuda

cuda = numba_cuda()

__all__ = ["im2col", "col2im", "group_norm_forward", "group_norm_vjp", "NORM_THREADS"]

#: Threads per block of the group-norm kernels (a power of two: the block sums halve it).
#: numba's simulator runs one Python thread per GPU thread, so it gets small blocks.
NORM_THREADS = 4 if numba.config.ENABLE_CUDASIM else 128


@cuda.jit
def _im2col_kernel(x, col, kw, sh, sw, ph, pw, wo):
    """``col[c, i·kw + j, n, p·wo + q] = x[n, c, p·sh + i - ph, q·sw + j - pw]`` (0 outside);
    x (N, C, H, W), col (C, kh·kw, N, ho·wo)."""
    N, C, H, W = x.shape
    taps, P = col.shape[1], col.shape[3]
    total = C * taps * N * P
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = e % P
        rest = e // P
        n = rest % N
        rest = rest // N
        k = rest % taps
        c = rest // taps
        i = k // kw
        j = k - i * kw
        p = r // wo
        q = r - p * wo
        row = p * sh + i - ph
        cc = q * sw + j - pw
        if row >= 0 and row < H and cc >= 0 and cc < W:
            col[c, k, n, r] = x[n, c, row, cc]
        else:
            col[c, k, n, r] = 0


@cuda.jit
def _col2im_kernel(col, xbar, kh, kw, sh, sw, ph, pw, ho, wo):
    """``x̄[n, c, h, w] = Σ col[c, i·kw + j, n, p·wo + q]`` over the taps ``(i, j)`` and
    outputs ``(p, q)`` with ``p·sh + i - ph = h`` and ``q·sw + j - pw = w``, taps in order."""
    N, C, H, W = xbar.shape
    total = N * C * H * W
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        w = e % W
        rest = e // W
        h = rest % H
        rest = rest // H
        c = rest % C
        n = rest // C
        acc = 0.0
        for i in range(kh):
            a = h + ph - i
            if a < 0 or a % sh != 0 or a // sh >= ho:
                continue
            p = a // sh
            for j in range(kw):
                b = w + pw - j
                if b < 0 or b % sw != 0 or b // sw >= wo:
                    continue
                acc += col[c, i * kw + j, n, p * wo + b // sw]
        xbar[n, c, h, w] = acc


def im2col(x, col, geo) -> None:
    """Fill ``col`` (C, kh·kw, N, ho·wo) with the patches of ``x`` (N, C, H, W) for the
    convolution geometry ``geo`` (:class:`symode.nn.conv._Geometry`)."""
    launch(_im2col_kernel, col.size, x, col, geo.kw, geo.sh, geo.sw, geo.ph, geo.pw, geo.wo)


def col2im(col, xbar, geo) -> None:
    """Fill ``xbar`` (N, C, H, W) with the adjoint of :func:`im2col` applied to ``col``."""
    launch(_col2im_kernel, xbar.size, col, xbar, geo.kh, geo.kw, geo.sh, geo.sw, geo.ph,
           geo.pw, geo.ho, geo.wo)


@cuda.jit(device=True)
def _block_sum(value, buf):
    """The sum of ``value`` over the block's threads, returned to every thread."""
    tid = cuda.threadIdx.x
    buf[tid] = value
    cuda.syncthreads()
    s = NORM_THREADS // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    total = buf[0]
    cuda.syncthreads()          # buf is reused by the next sum
    return total


@cuda.jit
def _norm_forward_kernel(x, gamma, beta, eps, xhat, r, y):
    """Block ``n·G + g``: standardise group g of sample n; x, xhat, y (N, G, M), r (N, G, 1)."""
    G, M = x.shape[1], x.shape[2]
    n = cuda.blockIdx.x // G
    g = cuda.blockIdx.x - n * G
    per = gamma.shape[0] // G
    S = M // per
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(NORM_THREADS, numba.float64)
    s = 0.0
    for m in range(tid, M, NORM_THREADS):
        s += x[n, g, m]
    mean = _block_sum(s, buf) / M
    s = 0.0
    for m in range(tid, M, NORM_THREADS):
        d = x[n, g, m] - mean
        s += d * d
    rr = 1.0 / math.sqrt(_block_sum(s, buf) / M + eps)
    if tid == 0:
        r[n, g, 0] = rr
    for m in range(tid, M, NORM_THREADS):
        c = g * per + m // S
        xh = (x[n, g, m] - mean) * rr
        xhat[n, g, m] = xh
        y[n, g, m] = xh * gamma[c] + beta[c]


@cuda.jit
def _norm_vjp_kernel(ybar, xhat, r, gamma, xbar, gpart, bpart):
    """Block ``n·G + g``: x̄ of group g of sample n; γ̄ and β̄ of its channels for sample n
    in gpart, bpart (N, C)."""
    G, M = ybar.shape[1], ybar.shape[2]
    n = cuda.blockIdx.x // G
    g = cuda.blockIdx.x - n * G
    per = gamma.shape[0] // G
    S = M // per
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(NORM_THREADS, numba.float64)
    mean_v = 0.0
    mean_xv = 0.0
    for ci in range(per):
        c = g * per + ci
        sy = 0.0
        sxy = 0.0
        for m in range(ci * S + tid, (ci + 1) * S, NORM_THREADS):
            sy += ybar[n, g, m]
            sxy += ybar[n, g, m] * xhat[n, g, m]
        sy = _block_sum(sy, buf)
        sxy = _block_sum(sxy, buf)
        if tid == 0:
            gpart[n, c] = sxy
            bpart[n, c] = sy
        mean_v += gamma[c] * sy
        mean_xv += gamma[c] * sxy
    mean_v /= M
    mean_xv /= M
    rr = r[n, g, 0]
    for m in range(tid, M, NORM_THREADS):
        a = gamma[g * per + m // S]
        xbar[n, g, m] = rr * (ybar[n, g, m] * a - mean_v - xhat[n, g, m] * mean_xv)


def group_norm_forward(x, gamma, beta, eps, xhat, r, y) -> None:
    """The CUDA counterpart of :func:`symode.nn.norm._forward` (same arguments)."""
    launch_blocks(_norm_forward_kernel, x.shape[0] * x.shape[1], NORM_THREADS,
                  x, gamma, beta, float(eps), xhat, r, y)


def group_norm_vjp(ybar, xhat, r, gamma, xbar, gpart, bpart) -> None:
    """The CUDA counterpart of :func:`symode.nn.norm._vjp`, with per-sample γ̄, β̄ (N, C)."""
    launch_blocks(_norm_vjp_kernel, ybar.shape[0] * ybar.shape[1], NORM_THREADS,
                  ybar, xhat, r, gamma, xbar, gpart, bpart)
