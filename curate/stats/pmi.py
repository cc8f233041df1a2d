"""Crisp boundaries by pointwise mutual information (Isola et al. 2014), speedy settings, and the
`edge_strength_pmi` statistic: the sum of that boundary map.

The pipeline follows the authors' MATLAB code (phillipi/crisp-boundaries, `findBoundaries(I,
'speedy')`) step by step:

1. Features, on the image halved (the speedy `scale_offset = 1`), one affinity per feature set:
   colour = CIE Lab (sRGB, ICC matrix adapted to D50 as MATLAB's `makecform('srgb2lab')`) scaled to
   0..1 by its global minimum and maximum (`mat2gray`); local variance = the square root of the
   local standard deviation (5 x 5 disk of radius 2, sample std, mirrored borders, as `stdfilt`) of
   the RGB principal components, `mat2gray`-ed. Each set is halved (MATLAB's `imresize(., 0.5)`:
   antialiased bicubic), decorrelated (principal component scores, MATLAB's sign convention) and
   `mat2gray`-ed again.
2. P(A, B): 5,000 pixel positions drawn with replacement (kept once each); for each, a pair of
   pixels at +-r with r = g + g / |g|, g ~ N(0, 0.25 I), each component capped at 2 px, rounded;
   pairs leaving the image dropped. `orderAB` then swaps only the first feature channel between A
   and B where A's is not larger, so A_0 = max and B_0 = min while the other channels stay with
   their pixels (the code's behaviour, kept: the paper describes ordering whole vectors). The
   density is a kernel density estimate with those pairs as kernels: product Epanechnikov kernel,
   bandwidth 0.05, normalised (the `kde(F', 0.05, [], 'e')` of the kde toolbox).
3. Affinity of every pixel pair within 5 px (each unordered pair once):
   w = (P(A, B) / 2 + 100)^1.25 / (P(A) P(B) + 100), the query (A, B) ordered as the kernels,
   P(.) the marginal of the kernels' A and B halves pooled (`joinTrees(., ., 0.5)`) at each
   pixel's own features, i.e. exp(PMI_rho) with rho = 1.25 and the code's regulariser 100; the two
   feature sets' affinities multiply.
4. Spectral clustering as speedy does it (DNCuts, Arbelaez et al. 2014): the affinity matrix
   decimated twice by 2 (every other row and column kept, then "squared"), the smallest 100
   eigenpairs of (D - W + 1e-10 I) v = lambda D v on the decimated graph, upsampled back, ZCA-
   whitened; each eigenvector (except the constant one) scaled to 0..1, divided by sqrt(lambda).
   The eigenvectors' scale before whitening follows `eigs`: for graphs of at most 2 x 100 nodes it
   falls back to a dense `eig(A, B)` of the numerically non-symmetric pair (LAPACK dggev: largest
   component 1); above, ARPACK's generalised mode (D-orthonormal). ZCA depends on that scale.
5. Boundaries: the absolute response to 8 oriented first-derivative-of-Gaussian filters (sigma 1,
   support 3 sigma, BSR's `oeFilter`, mirrored borders), summed over eigenvectors; the border
   suppression of the code (`borderSuppress`); the maximum over the 8 orientations. No non-maximum
   suppression. The map stays at half resolution, as the authors' `E`.

Departures, all deliberate:

- PMI is evaluated exactly. Speedy approximates it with a 4-tree regression forest (MATLAB's
  `classregtree`, trained on 10,000 exactly evaluated pairs) and evaluates the KDE with a dual-tree
  approximation (relative tolerance 1e-3) on query points jittered by 1e-5; both only approximate
  what is computed here.
- The pair sampling uses numpy's generator, seeded per image (`seed`), so a value is reproducible;
  MATLAB's random streams are not reproduced. The statistic therefore carries the method's own
  sampling noise (see tests/data/pmi/README.md for its size against the authors' code).
- The constant eigenvector is left out of the whitening (the authors' code whitens it too; its
  centred values are rounding noise, which ZCA amplifies into a column that is discarded
  afterwards; keeping it changes nothing measurable, see tests/data/pmi).
- DNCuts asks for 100 eigenvectors but a decimated graph of n nodes has at most n: a 32 x 32 image
  (16 x 16 halved, 4 x 4 decimated) gives 16, of which 15 make boundaries, exactly as the code.
- A constant image (or one whose features are constant) has no boundaries: the map is 0, where
  MATLAB's `mat2gray` would divide by zero. So is the map of an image whose decimated graph has a
  single node (halved size under 8 x 8 px or under 4 px on a side, e.g. 8 x 8 digits), which has
  no non-constant eigenvector (MATLAB's code fails on the smallest of these).

Speed: the KDE is the cost (pixel pairs x kernels). Small images (pixels x kernels up to
`DENSE_KDE`) evaluate it from per-pixel kernel tables, visiting for each pair only the kernels
within reach on channel 0 (compiled, numba); larger ones bucket the kernels on a grid of cells of
side h over the A features and test the 3^D cells around each query, in parallel. A 32 x 32 image
takes about 10 ms, a 500 x 375 one tens of seconds (benchmarks/bench_stats.py --pmi); the
statistics pass therefore shrinks images over `MAX_SIDE` px on a side first (`shrink`), as it does
for segmentation.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numba
import numpy as np
from scipy import linalg, ndimage, sparse

# settings of setEnvironment('speedy')
N_KERNELS = 5000  # opts.kde.Nkernels: positions drawn for the KDE of P(A, B)
BANDWIDTH = 0.05  # kde(F', 0.05, [], 'e'): Epanechnikov half-width on 0..1 features
RHO = 1.25  # opts.joint_exponent
P_REG = 100.0  # opts.p_reg, added to P(A, B) / 2 and to P(A) P(B)
SIG = 0.25  # opts.sig: variance (px^2) of the pair offset
PAIR_RADIUS = 5  # getLocalPairs: affinities between pixels at most 5 px apart
N_VEC = 100  # opts.spectral_clustering.nvec
N_ORIENT = 8  # oriented filters
DENSE_GRAPH = 1024  # pixels (after halving) up to which the affinity matrix is dense
DENSE_FILTER = 256  # pixels up to which the 8 filters are one cached matrix (2,048 x 256)
DENSE_KDE = (
    1_000_000  # pixels x kernels up to which the KDE is evaluated densely (5 tables of 8 MB)
)
MAX_SIDE = 256  # the statistics pass shrinks larger images (area interpolation) to this side
VAR_DISK = 2  # stdfilt neighbourhood: strel('disk', 2^(scale - 1), 0) at scale 2


# ----------------------------------------------------------------------------- MATLAB helpers


def _mat2gray(x: np.ndarray) -> np.ndarray | None:
    """Scale to 0..1 by the global minimum and maximum; None when x is constant."""
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return None
    return (x - lo) / (hi - lo)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel (a = -0.5), MATLAB's imresize 'bicubic'."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def _halve_matrix(n: int) -> np.ndarray:
    """(ceil(n / 2), n) matrix of MATLAB's imresize(., 0.5) along one axis: bicubic kernel widened
    by 2 (antialiasing), weights normalised, out-of-range taps mirrored ('symmetric')."""
    scale = 0.5
    m = int(np.ceil(n * scale))
    u = np.arange(1, m + 1, dtype=np.float64)
    x = u / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel
    width = 4 / scale
    left = np.floor(x - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based
    w = scale * _cubic(scale * (x[:, None] - idx))
    w /= w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(n), np.arange(n)[::-1]])
    src = aux[np.mod(idx.astype(np.int64) - 1, 2 * n)]
    out = np.zeros((m, n))
    np.add.at(out, (np.repeat(np.arange(m), taps), src.ravel()), w.ravel())
    out.flags.writeable = False  # cached: shared between calls
    return out


def halve(img: np.ndarray) -> np.ndarray:
    """MATLAB's imresize(img, 0.5) (bicubic, antialiased) of an (H, W, C) float image."""
    rh, rw = _halve_matrix(img.shape[0]), _halve_matrix(img.shape[1])
    return np.einsum("ih,hwc,jw->ijc", rh, img, rw, optimize=True)


def _pca_scores(x: np.ndarray) -> np.ndarray:
    """princomp scores of the rows of x (N, C): centred, projected on the principal axes by
    decreasing variance, each axis's largest-magnitude coefficient positive."""
    x0 = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x0, full_matrices=False)
    coeff = vt.T
    sign = np.sign(coeff[np.argmax(np.abs(coeff), axis=0), np.arange(coeff.shape[1])])
    sign[sign == 0] = 1
    return x0 @ (coeff * sign)


def _pca_image(img: np.ndarray) -> np.ndarray:
    h, w, c = img.shape
    return _pca_scores(img.reshape(h * w, c)).reshape(h, w, c)


_SRGB_D50 = np.array(  # the ICC sRGB profile's colorants (D50), as MATLAB's makecform uses
    [
        [0.436065673828125, 0.385147094726562, 0.143066406250000],
        [0.222488403320312, 0.716873168945312, 0.060607910156250],
        [0.013916015625000, 0.097076416015625, 0.714096069335938],
    ]
)
_WHITE_D50 = np.array([0.9642, 1.0, 0.8251])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (L 0..100) of an sRGB image on 0..1, relative to D50 as MATLAB's
    applycform(., makecform('srgb2lab'))."""
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    t = (lin @ _SRGB_D50.T) / _WHITE_D50
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.float64)


def _stdfilt(x: np.ndarray, nhood: np.ndarray) -> np.ndarray:
    """MATLAB's stdfilt per channel: sample standard deviation (n - 1) over nhood, mirrored borders."""
    n = nhood.sum()
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        s1 = ndimage.correlate(x[..., c], nhood, mode="reflect")
        s2 = ndimage.correlate(x[..., c] ** 2, nhood, mode="reflect")
        out[..., c] = np.sqrt(np.maximum(s2 / (n - 1) - s1 * s1 / (n * (n - 1)), 0))
    return out


def features(rgb: np.ndarray) -> list[np.ndarray] | None:
    """The two speedy feature sets (colour, local variance) of an RGB float image on 0..1, each
    (H/2, W/2, 3) on 0..1; None when either is constant (no boundaries)."""
    out = []
    colour = _mat2gray(srgb_to_lab(rgb))
    var = _mat2gray(np.sqrt(_stdfilt(_pca_image(rgb), _disk(VAR_DISK))))
    for f in (colour, var):
        if f is None:
            return None
        f = _mat2gray(_pca_image(halve(f)))
        if f is None:
            return None
        out.append(f)
    return out


# ----------------------------------------------------------------------------- pairs and the KDE


@lru_cache(maxsize=16)
def local_pairs(h: int, w: int, radius: int = PAIR_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair of pixels at most `radius` px apart, as row-major indices i < j
    (getLocalPairs), sorted by i then j."""
    offs = [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dy * dy + dx * dx <= radius * radius and dy * w + dx > 0
    ]
    ys, xs = np.mgrid[0:h, 0:w]
    ii, jj = [], []
    for dy, dx in offs:
        ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        a = (ys * w + xs)[ok]
        ii.append(a)
        jj.append(a + dy * w + dx)
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    order = np.lexsort((j, i))
    i, j = i[order].astype(np.int64), j[order].astype(np.int64)
    i.flags.writeable = j.flags.writeable = False  # cached: shared between calls
    return i, j


def sample_kernels(f: np.ndarray, rng: np.random.Generator, n: int = N_KERNELS) -> np.ndarray:
    """(K, 2 D) feature pairs (A, B) sampled from f (H, W, D) as the kernels of P(A, B) (sampleF):
    n positions drawn with replacement, kept once each; a pair at +-r around each, with
    r = g + g / |g|, g ~ N(0, 0.25 I) px, components capped at 2 px, rounded; pairs leaving the image
    dropped; then orderAB: the first feature channel is swapped between A and B where A's is not
    larger (only that channel: A keeps its other channels), so A_0 = max and B_0 = min."""
    h, w, d = f.shape
    pos = np.unique(rng.integers(0, h * w, size=n))
    p0 = np.stack([pos // w, pos % w], axis=1).astype(np.float64)
    r = rng.standard_normal((len(pos), 2)) * np.sqrt(SIG)
    norm = np.sqrt((r * r).sum(axis=1, keepdims=True))
    r = r + np.divide(r, norm, out=np.zeros_like(r), where=norm > 0)
    cap = 4 * SIG + 1  # px
    r = np.sign(r) * np.minimum(np.abs(r), cap)
    p1 = _mround(p0 + r).astype(np.int64)
    p2 = _mround(p0 - r).astype(np.int64)
    ok = (p1 >= 0).all(1) & (p2 >= 0).all(1) & (p1[:, 0] < h) & (p2[:, 0] < h)
    ok &= (p1[:, 1] < w) & (p2[:, 1] < w)
    flat = f.reshape(-1, d)
    a = flat[p1[ok, 0] * w + p1[ok, 1]]
    b = flat[p2[ok, 0] * w + p2[ok, 1]]
    hi, lo = np.maximum(a[:, 0], b[:, 0]), np.minimum(a[:, 0], b[:, 0])
    a[:, 0], b[:, 0] = hi, lo
    return np.concatenate([a, b], axis=1)


@numba.njit(cache=True)
def _grid(cent, h, nc):  # pragma: no cover - compiled
    """Bucket the kernel centres (K, D) into cells of side h: (kernel order by cell, cell starts)."""
    k, d = cent.shape
    cell = np.empty(k, np.int64)
    for q in range(k):
        c = 0
        for t in range(d):
            v = min(max(int(cent[q, t] / h), 0), nc - 1)
            c = c * nc + v
        cell[q] = c
    order = np.argsort(cell, kind="mergesort")
    start = np.zeros(nc**d + 1, np.int64)
    for q in range(k):
        start[cell[q] + 1] += 1
    for c in range(nc**d):
        start[c + 1] += start[c]
    return order, start


@numba.njit(cache=True)
def _kde_one(t, qa, qb, ca, cb, h, nc, order, start, joint):  # pragma: no cover - compiled
    """The sum of _kde_sum for query t: the 3^D cells around qa_t, each kernel in them tested."""
    d = qa.shape[1]
    base = np.empty(d, np.int64)
    off = np.empty(d, np.int64)
    for u in range(d):
        base[u] = min(max(int(qa[t, u] / h), 0), nc - 1)
        off[u] = -1
    s = 0.0
    while True:
        c = 0
        ok = True
        for u in range(d):
            v = base[u] + off[u]
            if v < 0 or v >= nc:
                ok = False
                break
            c = c * nc + v
        if ok:
            for m in range(start[c], start[c + 1]):
                q = order[m]
                val = 1.0
                for u in range(d):
                    z = (qa[t, u] - ca[q, u]) / h
                    if z >= 1.0 or z <= -1.0:
                        val = 0.0
                        break
                    val *= 1.0 - z * z
                if val > 0.0 and joint:
                    for u in range(d):
                        z = (qb[t, u] - cb[q, u]) / h
                        if z >= 1.0 or z <= -1.0:
                            val = 0.0
                            break
                        val *= 1.0 - z * z
                s += val
        u = d - 1  # next of the 3^D neighbour offsets
        while u >= 0 and off[u] == 1:
            off[u] = -1
            u -= 1
        if u < 0:
            break
        off[u] += 1
    return s


@numba.njit(cache=True, parallel=True)
def _kde_sum(qa, qb, ca, cb, h, nc, order, start, joint):  # pragma: no cover - compiled
    """For each query t: sum_k K(qa_t - ca_k) [K(qb_t - cb_k) if joint], K the product Epanechnikov
    kernel (unnormalised, half-width h). Only kernels whose A centre lies in the 3^D cells around
    qa_t can reach it (cells of side h, on a grid indexed by ca). Queries run in parallel (the
    statistics pass sets one thread per worker)."""
    n = qa.shape[0]
    out = np.zeros(n)
    for t in numba.prange(n):
        out[t] = _kde_one(t, qa, qb, ca, cb, h, nc, order, start, joint)
    return out


@numba.njit(cache=True)
def _nonzero_rows(a):  # pragma: no cover - compiled
    """CSR-like (row starts, column indices) of the non-zero entries of each row of a."""
    n, k = a.shape
    ptr = np.zeros(n + 1, np.int64)
    for p in range(n):
        c = 0
        for q in range(k):
            if a[p, q] != 0.0:
                c += 1
        ptr[p + 1] = ptr[p] + c
    idx = np.empty(ptr[n], np.int64)
    for p in range(n):
        c = ptr[p]
        for q in range(k):
            if a[p, q] != 0.0:
                idx[c] = q
                c += 1
    return ptr, idx


@numba.njit(cache=True)
def _kde_dense(flat, ca, cb, i, j, h):  # pragma: no cover - compiled
    """Joint sums (one per pair, chimeric orderAB queries) and marginal sums (one per pixel, A and B
    halves) by direct evaluation over every kernel, from per-pixel factor tables: for small images."""
    n, d = flat.shape
    k = ca.shape[0]
    inv = 1.0 / h
    cat = np.ascontiguousarray(ca.T) * inv  # (D, K), contiguous along kernels: vectorisable
    cbt = np.ascontiguousarray(cb.T) * inv
    a0 = np.empty((n, k))  # K(f_p0 - cA0_k)
    ar = np.ones((n, k))  # prod over the other channels of K(f_pc - cA_kc)
    b0 = np.empty((n, k))
    br = np.ones((n, k))
    for p in range(n):
        x = flat[p, 0] * inv
        for q in range(k):
            z = x - cat[0, q]
            a0[p, q] = max(0.0, 1.0 - z * z)
            z = x - cbt[0, q]
            b0[p, q] = max(0.0, 1.0 - z * z)
        for c in range(1, d):
            x = flat[p, c] * inv
            for q in range(k):
                z = x - cat[c, q]
                ar[p, q] *= max(0.0, 1.0 - z * z)
                z = x - cbt[c, q]
                br[p, q] *= max(0.0, 1.0 - z * z)
    marginal = np.zeros(n)
    for p in range(n):
        s = 0.0
        for q in range(k):
            s += a0[p, q] * ar[p, q] + b0[p, q] * br[p, q]
        marginal[p] = s
    # per pixel, the kernels within reach on channel 0 (a0 != 0: the first principal component has
    # the widest spread, the most selective single test) and on all channels (a0 ar != 0)
    nz0_ptr, nz0 = _nonzero_rows(a0)
    full = a0 * ar
    nzf_ptr, nzf = _nonzero_rows(full)
    joint = np.zeros(i.shape[0])
    for t in range(i.shape[0]):
        p, r = i[t], j[t]
        s = 0.0
        if flat[p, 0] > flat[r, 0]:  # not swapped: A is pixel p's own feature vector
            for m in range(nzf_ptr[p], nzf_ptr[p + 1]):
                q = nzf[m]
                s += full[p, q] * br[r, q] * b0[r, q]
        else:  # A = (f_r0, f_p1, ...), B = (f_p0, f_r1, ...)
            for m in range(nz0_ptr[r], nz0_ptr[r + 1]):
                q = nz0[m]
                s += ar[p, q] * br[r, q] * a0[r, q] * b0[p, q]
        joint[t] = s
    return joint, marginal


def pmi_affinity(f: np.ndarray, kernels: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """exp(PMI_rho) of the pixel pairs (i, j) (row-major indices) of feature map f (H, W, D) under
    the KDE with kernels (K, 2 D) (A then B features): (P(A, B) / 2 + 100)^rho / (P(A) P(B) + 100).

    The query (A, B) is ordered as the kernels are (orderAB: channel 0 only); P(A) and P(B) are the
    marginal (A and B halves of the kernels pooled) at the pixels' own features."""
    d = f.shape[2]
    flat = np.ascontiguousarray(f.reshape(-1, d))
    n_k = len(kernels)
    ca = np.ascontiguousarray(kernels[:, :d])
    cb = np.ascontiguousarray(kernels[:, d:])
    norm = (4.0 / 3.0 * BANDWIDTH) ** d  # integral of one D-dimensional kernel
    if len(flat) * n_k <= DENSE_KDE:
        joint, marginal = _kde_dense(flat, ca, cb, i, j, BANDWIDTH)
    else:
        nc = int(np.floor(1.0 / BANDWIDTH)) + 1  # grid cells per feature axis (features on 0..1)
        qa, qb = flat[i], flat[j]
        qa[:, 0] = np.maximum(flat[i, 0], flat[j, 0])
        qb[:, 0] = np.minimum(flat[i, 0], flat[j, 0])
        order_a, start_a = _grid(ca, BANDWIDTH, nc)
        order_b, start_b = _grid(cb, BANDWIDTH, nc)
        joint = _kde_sum(qa, qb, ca, cb, BANDWIDTH, nc, order_a, start_a, True)
        marginal = _kde_sum(flat, flat, ca, cb, BANDWIDTH, nc, order_a, start_a, False)
        marginal += _kde_sum(flat, flat, cb, ca, BANDWIDTH, nc, order_b, start_b, False)
    joint = joint / (n_k * norm * norm)
    marginal = 0.5 * marginal / (n_k * norm)
    return (P_REG + joint / 2) ** RHO / (marginal[i] * marginal[j] + P_REG)


# ----------------------------------------------------------------------------- spectral step


def _dncuts(
    w: sparse.csr_matrix | np.ndarray, h: int, wd: int, nvec: int
) -> tuple[np.ndarray, np.ndarray]:
    """ncuts_downsample3(W, nvec, 2, 2): eigenvalues (ascending) and whitened, upsampled
    eigenvectors (N, k) of the normalised cut on the twice-decimated graph. W is dense or sparse."""
    dense = isinstance(w, np.ndarray)
    a = w if dense else w.tocsc()
    bs = []
    rows, cols = h, wd
    for _ in range(2):
        keep = ((np.arange(rows)[:, None] % 2 == 1) & (np.arange(cols)[None, :] % 2 == 1)).ravel()
        keep = np.flatnonzero(keep)
        if dense:
            a_sub = a[:, keep].T  # (kept, N)
            dsum = a_sub.sum(axis=0) + np.finfo(float).eps
            b = (a_sub / dsum).T  # (N, kept), rows sum to 1
            a = a_sub @ b
        else:
            a_sub = a[:, keep].T.tocsr()
            dsum = np.asarray(a_sub.sum(axis=0)).ravel() + np.finfo(float).eps
            b = (a_sub @ sparse.diags(1.0 / dsum)).T.tocsr()
            a = (a_sub @ b).tocsc()
        bs.append(b)
        rows, cols = rows // 2, cols // 2
    if not dense:
        a = a.toarray() if a.shape[0] <= 2 * nvec else a
    n = a.shape[0]
    k = min(nvec, n)
    if 2 * k >= n:
        # eigs's own fallback for small problems (Octave: p = 2k >= n): a dense eig(A, B) of the
        # (numerically non-symmetric) pair, i.e. LAPACK's dggev, which scales each eigenvector so
        # that its largest-magnitude component is 1. The scale matters: ZCA whitening below is not
        # invariant to it.
        a = np.asarray(a)
        deg = a.sum(axis=0)
        lap = np.diag(deg) - a + 1e-10 * np.eye(n)
        vals, vecs = linalg.eigh(lap, np.diag(deg), subset_by_index=[0, k - 1])
        vecs = vecs / np.abs(vecs).max(axis=0)
    else:
        # ARPACK's shift-invert mode with B = D returns D-orthonormal eigenvectors
        from scipy.sparse.linalg import eigsh

        a = sparse.csc_matrix(a)
        deg = np.asarray(a.sum(axis=0)).ravel()
        lap = sparse.diags(deg) - a + 1e-10 * sparse.identity(n)
        vals, vecs = eigsh(lap.tocsc(), k=k, M=sparse.diags(deg).tocsc(), sigma=0, which="LM")
        order = np.argsort(vals)
        vals, vecs = vals[order], vecs[:, order]
    for b in bs[::-1]:
        vecs = b @ vecs
    # ZCA whitening (whiten(EV, 1, 0)) of the non-constant eigenvectors
    x = vecs[:, 1:] - vecs[:, 1:].mean(axis=0)
    if x.shape[1]:
        cov = x.T @ x / x.shape[0]
        ev, v = np.linalg.eigh(cov)
        ev = np.maximum(ev, np.finfo(float).tiny)
        x = x @ (v @ np.diag(1.0 / np.sqrt(ev)) @ v.T)
    return vals[1:], x


def _mround(x: np.ndarray) -> np.ndarray:
    """MATLAB's round: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


@cache
def oe_filter(theta: float, sigma: float = 1.0, support: float = 3.0) -> np.ndarray:
    """BSR's oeFilter (deriv 1, no Hilbert transform): a Gaussian along x times its derivative
    along y, rotated by theta, integrated on a 10x supersampled grid, zero mean, unit L1 norm."""
    hsz = int(np.ceil(support * sigma))
    sz = 2 * hsz + 1
    rate = min(10, max(1, 1000 // sz))
    samples = sz * rate
    r = sz // 2 + 0.5 * (1 - 1 / rate)
    dom = np.linspace(-r, r, samples)
    sx, sy = np.meshgrid(dom, dom)
    mx, my = _mround(sx), _mround(sy)
    membership = (mx + hsz) + (my + hsz) * sz  # 0-based, column = x
    su = sx * np.sin(theta) + sy * np.cos(theta)
    sv = sx * np.cos(theta) - sy * np.sin(theta)
    big_r = r * np.sqrt(2) * 1.01
    fs = int(np.ceil(big_r * rate * 10))
    fs += (fs + 1) % 2
    fdom = np.linspace(-big_r, big_r, fs)
    gap = 2 * big_r / (fs - 1)
    fx = np.exp(-(fdom**2) / (2 * sigma**2))
    fy = np.exp(-(fdom**2) / (2 * sigma**2)) * (-fdom / sigma**2)
    xi = (_mround(su / gap) + fs // 2).astype(np.int64)
    yi = (_mround(sv / gap) + fs // 2).astype(np.int64)
    vals = fx[xi] * fy[yi]
    f = np.bincount(membership.ravel().astype(np.int64), vals.ravel(), minlength=sz * sz)
    # MATLAB reshapes column-major: element (row, col) = f[row + col * sz], membership = x + y sz
    f = f.reshape(sz, sz)  # [y, x] in row-major = MATLAB's f(x + 1, y + 1) transposed
    f = f.T  # MATLAB's filter: row index = x bin, column index = y bin
    f = f - f.mean()
    f = f / np.abs(f).sum()
    f.flags.writeable = False  # cached: shared between calls
    return f


@lru_cache(maxsize=64)
def border_suppressor(h: int, w: int, n_orient: int = N_ORIENT) -> np.ndarray:
    """(n_orient, H, W) multipliers of borderSuppress for filter orientation o = 1..n_orient."""
    br = int(np.ceil(0.03 * h))
    xx, yy = np.meshgrid(np.arange(1, w + 1), np.arange(1, h + 1))
    m1 = xx > (w / h) * yy
    m2 = m1[:, ::-1]
    sel = ~m1 & m2
    vert = np.minimum(((xx - 1) / br) ** 2, 1) * sel + ~sel
    vert = 1 - vert * vert[:, ::-1]
    sel = m1 & m2
    hort = np.minimum(((yy - 1) / br) ** 2, 1) * sel + ~sel
    hort = 1 - hort * hort[::-1, :]
    th = np.pi / n_orient * np.arange(1, n_orient + 1)
    return 1 - (np.abs(np.cos(th))[:, None, None] * hort + np.abs(np.sin(th))[:, None, None] * vert)


def _oriented_energy(vecs: np.ndarray, vals: np.ndarray, h: int, w: int) -> np.ndarray:
    """(8, H, W): sum over eigenvectors of |oriented filter * (vector scaled to 0..1) / sqrt(lambda)|."""
    stack = vecs.T.reshape(-1, h, w)
    lo = stack.min(axis=(1, 2), keepdims=True)
    span = stack.max(axis=(1, 2), keepdims=True) - lo
    use = (vals > 0) & (span[:, 0, 0] > 0)
    stack = (stack[use] - lo[use]) / span[use] / np.sqrt(vals[use])[:, None, None]
    if h * w <= DENSE_FILTER:  # small images: the 8 filters as one cached linear operator
        resp = _filter_operator(h, w) @ stack.reshape(len(stack), h * w).T  # (8 H W, vectors)
        return np.abs(resp).sum(axis=1).reshape(N_ORIENT, h, w)
    out = np.zeros((N_ORIENT, h, w))
    for o in range(N_ORIENT):
        filt = oe_filter(np.pi / N_ORIENT * (o + 1))
        # conv2(padReflect(vec, 3), f, 'same'): a true convolution, mirrored borders
        resp = ndimage.convolve(stack, filt[None], mode="reflect")
        out[o] = np.abs(resp).sum(axis=0)
    return out


@lru_cache(maxsize=16)
def _filter_operator(h: int, w: int) -> np.ndarray:
    """(8 H W, H W) matrix applying the 8 oriented filters (mirrored borders) to a flattened image."""
    eye = np.eye(h * w).reshape(h * w, h, w)
    ops = [
        ndimage.convolve(eye, oe_filter(np.pi / N_ORIENT * (o + 1))[None], mode="reflect")
        .reshape(h * w, h * w)
        .T
        for o in range(N_ORIENT)
    ]
    out = np.concatenate(ops, axis=0)
    out.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- public


def pmi_boundaries(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """Boundary map E of Isola et al. 2014 (speedy settings) at half resolution.

    Parameters
    ----------
    rgb : (H, W, 3) or (H, W, 1) or (H, W) uint8 image; grey images are repeated to 3 channels;
        any other dtype raises ValueError.
    seed : seeds the sampling of the kernel pairs of P(A, B).

    Returns
    -------
    (ceil(H / 2), ceil(W / 2)) float64 map, >= 0; all zeros for a constant image.
    """
    x = np.asarray(rgb)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3) or (H, W, 1) image, got shape {x.shape}")
    if x.dtype != np.uint8:  # the maths reads 0..255 grey levels; floats have no agreed scale
        raise ValueError(
            f"expected uint8 pixels (0..255), got {x.dtype}; map a float image to 0..255 and "
            "round it to uint8 first (the stats pass does so by the split's range)"
        )
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    x = x.astype(np.float64) / 255.0
    h, w = (x.shape[0] + 1) // 2, (x.shape[1] + 1) // 2
    if (h // 4) * (w // 4) <= 1:  # DNCuts's graph (halved twice) has one node: no eigenvectors
        return np.zeros((h, w))
    feats = features(x)
    if feats is None:
        return np.zeros((h, w))
    rng = np.random.default_rng(seed)
    return boundaries_from_features(feats, [sample_kernels(f, rng) for f in feats])


def boundaries_from_features(feats: list[np.ndarray], kernels: list[np.ndarray]) -> np.ndarray:
    """Steps 3 to 5 (affinity, DNCuts, oriented energy, border suppression, maximum over
    orientations) from the feature sets (H, W, D) and the kernels (K, 2 D) of each set's P(A, B)."""
    h, w = feats[0].shape[:2]
    i, j = local_pairs(h, w)
    aff = np.ones(len(i))
    for f, k in zip(feats, kernels, strict=True):
        aff *= pmi_affinity(f, k, i, j)
    n = h * w
    if n <= DENSE_GRAPH:
        wmat = np.zeros((n, n))
        wmat[i, j] = aff
        return boundaries_from_affinity(wmat + wmat.T, h, w)
    wmat = sparse.coo_matrix((aff, (i, j)), shape=(n, n)).tocsr()
    return boundaries_from_affinity((wmat + wmat.T).tocsr(), h, w)


def boundaries_from_affinity(wmat: sparse.csr_matrix | np.ndarray, h: int, w: int) -> np.ndarray:
    """Steps 4 and 5 from the symmetric (H W, H W) affinity matrix (row-major pixels), dense or sparse."""
    vals, vecs = _dncuts(wmat, h, w, N_VEC)
    energy = _oriented_energy(vecs, vals, h, w) * border_suppressor(h, w)
    return energy.max(axis=0)


def shrink(img: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    """The image with its longer side shrunk to `side` (OpenCV area interpolation) when longer."""
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    import cv2

    s = side / max(h, w)
    out = cv2.resize(
        img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
    return out[..., None] if out.ndim == 2 else out


def edge_strength_pmi(rgb: np.ndarray, seed: int = 0) -> float:
    """Sum over the (half-resolution) pixels of the crisp-boundary map `pmi_boundaries(rgb, seed)`.
    Higher = more or stronger object boundaries."""
    return float(pmi_boundaries(rgb, seed).sum())
