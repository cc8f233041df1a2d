"""Image statistics of docs/concepts.md#image-statistics, each a pure function; batched forms work on
stacks of equal-sized images.

Images are uint8 (H, W, C) with C in {1, 3}. Grey level g = 0.2989 R + 0.5870 G + 0.1140 B on 0..255
as float, not rounded (for one channel, g is the channel). Images larger than 128 x 128 are resized
to 128 x 128 (area interpolation) for entropy and DCT, as Pliushch et al. did for ImageNet.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

STATS = (
    "segment_count",
    "mean_local_entropy",
    "dct_pct",
    "edge_strength_sobel",
    "mean_grey",
    "rms_contrast",
    "colourfulness",
    "jpeg_bytes",
    "jpeg_bits_per_pixel",
    "edge_strength_pmi",
)  # the statistic columns of image_stats (written by name: older catalogs add new ones last)
WINDOW = 10  # entropy window side
RESIZE = 128  # entropy and DCT work on at most 128 x 128
DCT_ENERGY = 0.9998  # share of the spectral norm the kept coefficients must reach


def grey(img: np.ndarray) -> np.ndarray:
    """(H, W, C) or (B, H, W, C) uint8 -> float64 grey level on 0..255, not rounded."""
    x = np.asarray(img, dtype=np.float64)
    if x.shape[-1] == 1:
        return x[..., 0]
    return 0.2989 * x[..., 0] + 0.5870 * x[..., 1] + 0.1140 * x[..., 2]


def shrink(g: np.ndarray, side: int = RESIZE) -> np.ndarray:
    """Resize a grey image (H, W) to side x side when larger than that in either dimension."""
    if g.shape[0] <= side and g.shape[1] <= side:
        return g
    import cv2

    return cv2.resize(g.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).astype(
        np.float64
    )


# ----------------------------------------------------------------------------- entropy


def _row_entropy(sorted_rows: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of the values in each row of a row-sorted (R, n) array.

    H = sum over runs of (L / n) log2(n / L): each of a run's L elements adds log2(n / L) / n
    (exactly 0 for a constant row).
    """
    r, n = sorted_rows.shape
    start = np.ones_like(sorted_rows, dtype=bool)
    start[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    run_id = np.cumsum(start.reshape(-1)) - 1
    lengths = np.bincount(run_id)
    return np.log2(n / lengths[run_id]).reshape(r, n).sum(axis=1) / n


def local_entropy_map(g: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Entropy of every window x window patch (stride 1, valid positions) of g, (B, H-w+1, W-w+1) from (B, H, W)."""
    keys = np.ascontiguousarray(g, dtype=np.float32).view(
        np.int32
    )  # equal keys <=> equal grey levels
    win = np.lib.stride_tricks.sliding_window_view(keys, (window, window), axis=(1, 2))
    b, ph, pw = win.shape[:3]
    rows = np.sort(win.reshape(b * ph * pw, window * window), axis=1)
    return _row_entropy(rows).reshape(b, ph, pw)


def mean_local_entropy(img: np.ndarray) -> float:
    """Mean over every 10 x 10 window (stride 1, valid) of the Shannon entropy in bits of its 100 grey
    values. NaN for images smaller than the window. Higher = more texture."""
    g = shrink(grey(img))
    if min(g.shape) < WINDOW:
        return float("nan")
    return float(local_entropy_map(g[None]).mean())  # the reference: sort every window


def mean_local_entropy_batch(imgs: np.ndarray) -> np.ndarray:
    """mean_local_entropy of a stack (B, H, W, C) of images of one size up to 128 x 128 (compiled sliding
    histogram; equal to the mean of local_entropy_map)."""
    from curate.stats.kernels import mean_window_entropy

    g = grey(imgs)
    if min(g.shape[1:]) < WINDOW:
        return np.full(len(imgs), np.nan)
    keys = np.ascontiguousarray(g, dtype=np.float32).view(np.int32)
    return mean_window_entropy(keys, WINDOW)


# ----------------------------------------------------------------------------- DCT


def dct_pct_batch(g: np.ndarray) -> np.ndarray:
    """dct_pct of a stack of grey images (B, H, W) on 0..255: 100 k / (H W), k the fewest DCT-II
    coefficients (orthonormal) whose norm reaches 0.9998 of the total. 0 for an all-black image."""
    d = fft.dctn(g / 255.0, type=2, norm="ortho", axes=(1, 2))
    b, h, w = d.shape
    s = np.sort(np.abs(d).reshape(b, -1), axis=1)[:, ::-1]
    energy = np.cumsum(s * s, axis=1)
    total = energy[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        reached = np.sqrt(energy) / np.sqrt(total) >= DCT_ENERGY
    k = np.argmax(reached, axis=1) + 1
    k[total[:, 0] == 0] = 0
    return 100.0 * k / (h * w)


def dct_pct(img: np.ndarray) -> float:
    """Percentage of DCT coefficients needed for 99.98 % of the norm. Higher = more high-frequency content."""
    return float(dct_pct_batch(shrink(grey(img))[None])[0])


# ----------------------------------------------------------------------------- edges, intensity, colour


def edge_strength_sobel_batch(imgs: np.ndarray) -> np.ndarray:
    """edge_strength_sobel of a stack (B, H, W, C): Sobel per image (borders reflected as scipy's
    'reflect', i.e. d c b a | a b c d), never across images."""
    g = grey(imgs) / 255.0
    p = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    dx = p[:, :, 2:] - p[:, :, :-2]  # [-1, 0, 1] along x
    dy = p[:, 2:, :] - p[:, :-2, :]  # [-1, 0, 1] along y
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]  # smoothed [1, 2, 1] along y
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]  # smoothed along x
    return np.sqrt(gx * gx + gy * gy).sum(axis=(1, 2))


def edge_strength_sobel(img: np.ndarray) -> float:
    """Sum over pixels of sqrt(Sx^2 + Sy^2) of g / 255, with the 3 x 3 Sobel kernels ([1, 2, 1] x [-1, 0, 1],
    unnormalised, as scipy.ndimage.sobel) and reflected borders. Higher = more or stronger edges."""
    return float(edge_strength_sobel_batch(np.asarray(img)[None])[0])


def mean_grey(img: np.ndarray) -> float:
    """Mean grey level on 0..255."""
    return float(grey(img).mean())


def rms_contrast(img: np.ndarray) -> float:
    """Standard deviation (ddof 0) of g / 255: RMS contrast on 0..1."""
    return float((grey(img) / 255.0).std())


def colourfulness(img: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003): sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), with
    rg = R - G and yb = (R + G) / 2 - B on 0..255. 0 for grey images. Higher = more colourful."""
    x = np.asarray(img, dtype=np.float64)
    if x.shape[-1] == 1:
        return 0.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(
        np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    )


def colourfulness_batch(imgs: np.ndarray) -> np.ndarray:
    """colourfulness of a stack (B, H, W, C)."""
    x = np.asarray(imgs, dtype=np.float64)
    if x.shape[-1] == 1:
        return np.zeros(len(x))
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return np.hypot(rg.std(axis=(1, 2)), yb.std(axis=(1, 2))) + 0.3 * np.hypot(
        rg.mean(axis=(1, 2)), yb.mean(axis=(1, 2))
    )


def jpeg_bytes(img: np.ndarray, quality: int = 90) -> int:
    """Size in bytes of the image encoded as JPEG at quality 90 (OpenCV, 4:2:0): a compression-based
    complexity. Higher = more complex."""
    import cv2

    x = np.asarray(img, np.uint8)
    if x.shape[-1] == 3:
        x = x[..., ::-1]  # OpenCV encodes BGR
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return int(buf.size)


SEGMENT_MAX_SIDE = 1024


def segment_count(img: np.ndarray) -> int:
    """Regions of skimage's felzenszwalb(rgb_uint8, scale=500, sigma=0.5, min_size=20); grey images are
    segmented as one channel; images larger than 1024 on a side are shrunk to 1024 first.
    Higher = more cluttered."""
    from skimage.segmentation import felzenszwalb

    x = np.asarray(img, np.uint8)
    h, w = x.shape[:2]
    if max(h, w) > SEGMENT_MAX_SIDE:
        import cv2

        s = SEGMENT_MAX_SIDE / max(h, w)
        x = cv2.resize(
            x, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
        if x.ndim == 2:
            x = x[..., None]
    if x.shape[-1] == 1:
        labels = felzenszwalb(x[..., 0], scale=500, sigma=0.5, min_size=20, channel_axis=None)
    else:
        labels = felzenszwalb(x, scale=500, sigma=0.5, min_size=20)
    return int(len(np.unique(labels)))
