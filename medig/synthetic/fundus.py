# SPDX-License-Identifier: Apache-2.0
"""Synthetic colour fundus photographs with pixel-exact lesion masks.

An audit needs images whose lesions are known: :func:`generate` draws fundus-like photographs of
diabetic retinopathy (DR) together with the ground-truth lesion masks and a referable-DR label, in
pure torch, batched, offline and exactly reproducible from a seed. It trains and checks medig's demo
model and feeds the localisation metrics (pointing game, attribution mass inside lesion masks).

The images are drawings, not photographs of patients: an orange-red retina on black, darker towards
the periphery, with a bright optic disc, a tapering vessel tree (arcades around a darker macula,
veins darker and wider than arteries), illumination, colour and size jitter, camera noise and a
slight softness. Left eyes have the disc on the left of the image, right eyes on the right (the
usual display of a fundus photograph: the disc is nasal to the fovea).
"""
from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

__all__ = ["GEOMETRY_KEYS", "MIN_LESION_FRACTION", "generate", "geometry", "laterality",
           "referable"]

#: Label rule: an image is *referable* (label 1) iff its lesion mask covers at least this fraction
#: of the image (16 pixels at 256 x 256). Diseased images are drawn with microaneurysms plus
#: haemorrhages, exudate clusters and/or cotton-wool spots, which clear the bar unless the lesions
#: fall outside the field of view; such an image is then drawn without lesions.
MIN_LESION_FRACTION = 2.5e-4

# Lesion masks are the pixels where a lesion's own (unit-peak) Gaussian profile exceeds this level,
# i.e. within ~1.45 sigma of its centre: where the lesion visibly changes the image.
_MASK_LEVEL = 0.35
_MIN_SPOT_SIGMA = 0.6  # pixels; see _render

# Vessel widths are rendered by splatting the centre line into a few blur levels (sigma, in pixels
# at 256 px) and interpolating between them; cheaper than a distance field per vessel.
_VESSEL_SIGMAS = (0.45, 0.7, 1.05, 1.6)

# Vessel tree layout per image: 4 trunks (superior/inferior temporal arcades, superior/inferior
# nasal), each as an artery and a vein, 4 small macular vessels, 2 branches per trunk vessel.
_N_TRUNK = 8
_N_MACULAR = 4
_N_BRANCH = 16
_N_VESSEL = _N_TRUNK + _N_MACULAR + _N_BRANCH

# Per-channel darkening (R, G, B): veins darker than arteries, both red; dark-red lesions as veins.
_VEIN_DARK = (0.45, 0.72, 0.62)
_ARTERY_DARK = (0.22, 0.45, 0.38)
_RED_LESION_DARK = (0.42, 0.8, 0.74)
_EXUDATE_RGB = (1.0, 0.9, 0.42)
_COTTON_WOOL_RGB = (0.96, 0.84, 0.74)
_DUST_RGB = (0.3, 0.3, 0.3)
_DISC_RGB = (0.98, 0.8, 0.52)

_MAX_MA, _MAX_HAEM, _MAX_EX_CLUSTER, _EX_PER_CLUSTER, _MAX_CWS, _MAX_DUST = 14, 6, 3, 10, 2, 4


def referable(lesion_masks: torch.Tensor) -> torch.Tensor:
    """Apply the label rule to lesion masks.

    Parameters
    ----------
    lesion_masks : torch.Tensor
        Bool ``(N, 1, H, W)``.

    Returns
    -------
    torch.Tensor
        int64 ``(N,)``: 1 where the lesion area is at least :data:`MIN_LESION_FRACTION` of ``H * W``.
    """
    n, _, h, w = lesion_masks.shape
    area = lesion_masks.reshape(n, -1).sum(dim=1)
    return (area >= math.ceil(MIN_LESION_FRACTION * h * w)).long()


def _image_generator(seed: int, index: int) -> torch.Generator:
    # One generator per image: image i is the same whatever n is, and seeds never collide.
    digest = hashlib.blake2b(f"medig.synthetic:{seed}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _u(g: torch.Generator, lo: float, hi: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _sign(g: torch.Generator, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)


def _draw_image(g: torch.Generator, size: int, p_disease: float) -> dict[str, torch.Tensor]:
    """All random choices for one image, in units of the field-of-view radius ``r`` (pixels)."""
    p: dict[str, torch.Tensor] = {}
    p["disease"] = torch.rand((), generator=g) < p_disease
    p["side"] = _sign(g)  # +1: right eye, disc on the right of the image
    r = size * _u(g, 0.43, 0.49)
    p["r"] = r
    p["cx"] = size / 2 + size * _u(g, -0.025, 0.025)
    p["cy"] = size / 2 + size * _u(g, -0.025, 0.025)
    # About a third of cameras cut the disk at top and bottom with a flat mask.
    cut = torch.rand((), generator=g) < 0.35
    p["half_height"] = torch.where(cut, r * _u(g, 0.78, 0.92), r * 2.0)
    p["base_rgb"] = torch.stack([_u(g, 0.72, 0.95), _u(g, 0.30, 0.46), _u(g, 0.22, 0.5)])
    p["base_rgb"][1] *= p["base_rgb"][0]
    p["base_rgb"][2] *= p["base_rgb"][1]
    p["gain"] = _u(g, 0.72, 1.08)
    p["vignette"] = _u(g, 0.35, 0.7)
    p["grad_dir"] = _u(g, 0.0, 2 * math.pi)
    p["grad_amp"] = _u(g, 0.0, 0.22)
    p["texture_amp"] = _u(g, 0.02, 0.06)
    p["noise"] = _u(g, 0.006, 0.018)

    # Optic disc nasal to the fovea, ~2.5 disc diameters apart; the fovea sits slightly lower.
    s = p["side"]
    p["disc_x"] = p["cx"] + s * r * _u(g, 0.42, 0.56)
    p["disc_y"] = p["cy"] + r * _u(g, -0.07, 0.07)
    p["disc_r"] = r * _u(g, 0.11, 0.14)
    p["disc_alpha"] = _u(g, 0.45, 0.85)  # disc brightness varies in both classes (distractor)
    p["cup_frac"] = _u(g, 0.3, 0.6)
    p["cup_alpha"] = _u(g, 0.2, 0.6)
    p["fovea_x"] = p["disc_x"] - s * r * _u(g, 0.6, 0.72)
    p["fovea_y"] = p["disc_y"] + r * _u(g, 0.0, 0.08)
    p["macula_dark"] = _u(g, 0.15, 0.35)
    p["macula_sigma"] = r * _u(g, 0.14, 0.2)
    p["fovea_reflex"] = (torch.rand((), generator=g) < 0.5) * _u(g, 0.2, 0.45)

    # Vessel tree. Polar angles around the disc, 0 pointing at the fovea, positive = inferior.
    deg = math.pi / 180
    k = _N_TRUNK
    up = torch.tensor([-1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0])  # superior / inferior
    temporal = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    vein = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    t_start = torch.where(temporal > 0, _u(g, 72, 100, (k,)), _u(g, 100, 128, (k,))) * deg
    t_end = torch.where(temporal > 0, _u(g, 16, 34, (k,)), _u(g, 132, 168, (k,))) * deg
    bend = torch.where(temporal > 0, _u(g, 0.2, 0.36, (k,)), _u(g, 0.2, 0.5, (k,)))
    length = torch.where(temporal > 0, _u(g, 1.2, 1.5, (k,)), _u(g, 0.6, 0.95, (k,)))
    width = torch.where(vein > 0, _u(g, 0.020, 0.025, (k,)), _u(g, 0.015, 0.019, (k,)))
    # Small macular vessels heading temporally from the disc towards the fovea.
    m = _N_MACULAR
    up_m = torch.tensor([-1.0, -1.0, 1.0, 1.0])
    vein_m = torch.tensor([1.0, 0.0, 1.0, 0.0])
    t_start_m, t_end_m = _u(g, 25, 55, (m,)) * deg, _u(g, 12, 30, (m,)) * deg
    p["theta_start"] = torch.cat([up * t_start, up_m * t_start_m, torch.zeros(_N_BRANCH)])
    p["theta_end"] = torch.cat([up * t_end, up_m * t_end_m, torch.zeros(_N_BRANCH)])
    p["bend"] = torch.cat([bend, _u(g, 0.1, 0.3, (m,)), _u(g, 0.04, 0.18, (_N_BRANCH,))])
    p["rho_start"] = torch.cat([torch.zeros(k + m), _u(g, 0.25, 0.85, (_N_BRANCH,))])
    branch_len = _u(g, 0.25, 0.6, (_N_BRANCH,))
    p["rho_len"] = torch.cat([length, _u(g, 0.2, 0.4, (m,)), branch_len])
    p["width"] = torch.cat([width, _u(g, 0.009, 0.012, (m,)), torch.zeros(_N_BRANCH)])
    p["vein"] = torch.cat([vein, vein_m, vein.repeat(2)])
    # Branch i hangs off trunk vessel i % 8 and diverges by 15..40 degrees; off the temporal
    # arcades mostly outwards, and the few inward ones stay short (the macula is nearly avascular).
    parent_up, parent_temporal = up.repeat(2), temporal.repeat(2)
    outward = torch.rand((_N_BRANCH,), generator=g) < 0.75
    sign = torch.where(parent_temporal > 0, torch.where(outward, parent_up, -parent_up),
                       _sign(g, (_N_BRANCH,)))
    p["branch_delta"] = sign * _u(g, 15, 40, (_N_BRANCH,)) * deg
    inward = (parent_temporal > 0) & ~outward
    p["rho_len"][k + m:] = torch.where(inward, 0.4 * branch_len, branch_len)
    p["wiggle_amp"] = _u(g, 0.004, 0.014, (_N_VESSEL,))
    p["wiggle_len"] = _u(g, 0.12, 0.3, (_N_VESSEL,))
    p["wiggle_phase"] = _u(g, 0.0, 2 * math.pi, (_N_VESSEL,))

    # Lesions (drawn for every image so the stream of random numbers does not depend on the label;
    # healthy images simply do not render them). Positions relative to the fovea, in units of r.
    def spots(count: int, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
        rad = radius * torch.sqrt(torch.rand((count,), generator=g))
        ang = _u(g, 0.0, 2 * math.pi, (count,))
        return p["fovea_x"] + r * rad * torch.cos(ang), p["fovea_y"] + r * rad * torch.sin(ang)

    def present(count: int, lo: int, hi: int, p_kind: float = 1.0) -> torch.Tensor:
        # The kind shows up with probability p_kind, then with lo..hi instances (same draws
        # either way, so the random stream does not depend on the outcome).
        kind_on = torch.rand((), generator=g) < p_kind
        n_on = torch.randint(lo, hi + 1, (), generator=g) * kind_on
        return torch.arange(count) < n_on

    p["ma_x"], p["ma_y"] = spots(_MAX_MA, 0.9)
    p["ma_on"] = present(_MAX_MA, 2, _MAX_MA)
    p["ma_sigma"] = _u(g, 0.55, 0.85, (_MAX_MA,))
    p["ma_amp"] = _u(g, 0.75, 1.0, (_MAX_MA,))
    # Dot/blot haemorrhages: 1-3 overlapping blobs each, for irregular outlines.
    p["haem_x"], p["haem_y"] = spots(_MAX_HAEM, 0.85)
    # Each kind of larger lesion appears independently, so that every kind alone makes an image
    # referable often enough to be learned (when exudates were nearly always present, a model
    # learned to ignore haemorrhages).
    p["haem_on"] = present(_MAX_HAEM, 2, _MAX_HAEM, 0.6)
    p["haem_sigma"] = _u(g, 1.1, 2.8, (_MAX_HAEM,))
    # Amplitude above 1 (clamped when drawn): flat-topped blots with sharper edges than dust.
    p["haem_amp"] = _u(g, 1.1, 1.6, (_MAX_HAEM,))
    p["haem_lobe"] = torch.randn((_MAX_HAEM, 3, 2), generator=g) * 0.9
    p["haem_lobe_on"] = torch.rand((_MAX_HAEM, 3), generator=g) < 0.5
    # Hard exudates: clusters of small bright yellow dots, often around the macula.
    p["ex_x"], p["ex_y"] = spots(_MAX_EX_CLUSTER, 0.6)
    p["ex_on"] = present(_MAX_EX_CLUSTER, 1, _MAX_EX_CLUSTER, 0.5)
    p["ex_spread"] = r * _u(g, 0.03, 0.09, (_MAX_EX_CLUSTER,))
    p["ex_offset"] = torch.randn((_MAX_EX_CLUSTER, _EX_PER_CLUSTER, 2), generator=g)
    p["ex_dot_on"] = torch.rand((_MAX_EX_CLUSTER, _EX_PER_CLUSTER), generator=g) < 0.7
    p["ex_sigma"] = _u(g, 0.6, 1.4, (_MAX_EX_CLUSTER, _EX_PER_CLUSTER))
    p["ex_amp"] = _u(g, 0.55, 0.9, (_MAX_EX_CLUSTER, _EX_PER_CLUSTER))
    # Cotton-wool spots: pale, fuzzy, near the arcades.
    p["cws_x"], p["cws_y"] = spots(_MAX_CWS, 0.75)
    p["cws_on"] = present(_MAX_CWS, 1, _MAX_CWS, 0.35)
    p["cws_sigma"] = _u(g, 2.5, 4.5, (_MAX_CWS,))
    p["cws_amp"] = _u(g, 0.5, 0.75, (_MAX_CWS,))
    # Referable images carry at least one lesion bigger than a microaneurysm.
    none_big = ~(p["haem_on"].any() | p["ex_on"].any() | p["cws_on"].any())
    p["haem_on"][0] |= none_big
    # Dust on the optics: grey, blurry, anywhere in the field, in both classes (distractor).
    p["dust_x"] = p["cx"] + r * _u(g, -0.85, 0.85, (_MAX_DUST,))
    p["dust_y"] = p["cy"] + r * _u(g, -0.85, 0.85, (_MAX_DUST,))
    p["dust_on"] = present(_MAX_DUST, 0, _MAX_DUST)
    p["dust_sigma"] = _u(g, 2.0, 4.0, (_MAX_DUST,))
    p["dust_amp"] = _u(g, 0.25, 0.45, (_MAX_DUST,))
    return p


def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size) matrix M with ``x @ M`` = Gaussian blur of rows of ``x`` (edges replicated).

    A dense matrix product beats a depthwise convolution by ~4x on CPU here: BLAS is that much
    better optimised than grouped convolutions, and the frames are small.
    """
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1)
    k = torch.exp(-0.5 * (taps.float() / sigma) ** 2)
    k = k / k.sum()
    out = torch.arange(size)[None, :].expand(taps.numel(), size)
    src = (out + taps[:, None]).clamp(0, size - 1)
    m = torch.zeros(size * size)
    m.index_add_(0, (src * size + out).reshape(-1), k[:, None].expand(-1, size).reshape(-1))
    return m.view(size, size)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel of square images ``x`` (N, C, S, S)."""
    m = _blur_matrix(x.shape[-1], sigma)
    return m.T @ (x @ m)


def _splat_spots(
    n: int, size: int, img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor,
    amp: torch.Tensor, sigma_max: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian spots by local patches: returns (max of amp*profile, max of unit profile), (N,H,W).

    The maximum (not the sum) keeps overlapping lesions from turning black; the unit profile defines
    the mask independently of each lesion's contrast.
    """
    out = torch.zeros(n * size * size)
    shape = torch.zeros(n * size * size)
    if x.numel() == 0:
        return out.view(n, size, size), shape.view(n, size, size)
    # The patch radius depends on the kind of spot, not on the batch, so that an image's pixels
    # do not depend on which other images share its batch.
    rad = max(1, math.ceil(3 * sigma_max))
    off = torch.arange(-rad, rad + 1, dtype=torch.float32)
    px = torch.floor(x)[:, None, None] + off[None, None, :]  # (P, 1, K)
    py = torch.floor(y)[:, None, None] + off[None, :, None]  # (P, K, 1)
    d2 = (px + 0.5 - x[:, None, None]) ** 2 + (py + 0.5 - y[:, None, None]) ** 2
    prof = torch.exp(-0.5 * d2 / sigma[:, None, None] ** 2)
    inside = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    idx = (img[:, None, None] * size + py.clamp(0, size - 1)) * size + px.clamp(0, size - 1)
    prof = torch.where(inside, prof, torch.zeros(()))
    idx, prof = idx.long().reshape(-1), prof.reshape(-1)
    k2 = off.numel() ** 2
    out.scatter_reduce_(0, idx, prof * amp.repeat_interleave(k2), reduce="amax")
    shape.scatter_reduce_(0, idx, prof, reduce="amax")
    return out.view(n, size, size), shape.view(n, size, size)


def _vessel_points(p: dict[str, torch.Tensor], m: int) -> dict[str, torch.Tensor]:
    """Sample every vessel's centre line at ``m`` radii: x, y, width, weight (N, V, m) in pixels."""
    r = p["r"][:, None, None]
    n = r.shape[0]
    # Shared radius grid per image; vessels use the part between their start and end.
    t = torch.linspace(0.0, 1.0, m)
    rho = (p["disc_r"][:, None, None] * 0.15 + r * 1.5 * t)  # (N, 1, m)
    rho = rho.expand(n, _N_VESSEL, m)

    def course(start: torch.Tensor, end: torch.Tensor, bend: torch.Tensor) -> torch.Tensor:
        return end[..., None] + (start - end)[..., None] * torch.exp(-rho[:, : start.shape[1]] / (
            bend[..., None] * r))

    nt = _N_TRUNK + _N_MACULAR
    theta = torch.zeros(n, _N_VESSEL, m)
    theta[:, :nt] = course(p["theta_start"][:, :nt], p["theta_end"][:, :nt], p["bend"][:, :nt])
    parent = torch.arange(_N_BRANCH) % _N_TRUNK
    rho0 = p["rho_start"][:, nt:, None] * r
    diverge = 1 - torch.exp(-(rho[:, nt:] - rho0).clamp(min=0) / (p["bend"][:, nt:, None] * r))
    theta[:, nt:] = theta[:, parent] + p["branch_delta"][..., None] * diverge
    theta = theta + p["wiggle_amp"][..., None] * r / rho.clamp(min=1.0) * torch.sin(
        2 * math.pi * rho / (p["wiggle_len"][..., None] * r) + p["wiggle_phase"][..., None])

    start = p["rho_start"][..., None] * r
    end = start + p["rho_len"][..., None] * r
    frac = ((rho - start) / (end - start)).clamp(0, 1)
    on = (rho >= start) & (rho <= end)
    # Widths taper along the vessel; branches start at 70% of the parent's width there.
    base_w = p["width"].clone()
    parent_w = p["width"][:, parent]
    parent_frac = (p["rho_start"][:, nt:] / p["rho_len"][:, parent]).clamp(0, 1)
    base_w[:, nt:] = 0.7 * parent_w * (1 - 0.55 * parent_frac)
    w = base_w[..., None] * r * (1 - 0.55 * frac)
    fade = (1 - ((frac - 0.8) / 0.2).clamp(0, 1)) * on  # vessels fade out at their ends

    s = p["side"][:, None, None]
    x = p["disc_x"][:, None, None] - s * rho * torch.cos(theta)
    y = p["disc_y"][:, None, None] + rho * torch.sin(theta)
    ds = torch.sqrt(torch.diff(x, dim=-1, prepend=x[..., :1]) ** 2
                    + torch.diff(y, dim=-1, prepend=y[..., :1]) ** 2)
    return {"x": x, "y": y, "w": w, "weight": ds * fade}


def _splat_vessels(p: dict[str, torch.Tensor], n: int, size: int) -> torch.Tensor:
    """Vein and artery darkness (N, 2, H, W) in [0, 1]: centre lines splatted, blurred per width."""
    scale = size / 256
    m = int(2.5 * size)
    pts = _vessel_points(p, m)
    sig = (pts["w"] / 2.355).clamp(min=_VESSEL_SIGMAS[0] * scale, max=_VESSEL_SIGMAS[-1] * scale)
    levels = torch.tensor(_VESSEL_SIGMAS) * scale
    nb = len(_VESSEL_SIGMAS)
    # Log-linear interpolation of the width between the two neighbouring blur levels.
    pos = (torch.log(sig / levels[0]) / torch.log(levels[1] / levels[0])).clamp(0, nb - 1 - 1e-4)
    lo = pos.floor().long()
    hi_w = pos - lo
    # A line of density 1/px blurred by sigma peaks at 1/(sigma*sqrt(2*pi)): undo it per level.
    peak = levels * math.sqrt(2 * math.pi)
    layer = p["vein"][:, :, None].expand_as(sig).long()
    img = torch.arange(n)[:, None, None].expand_as(sig)
    acc = torch.zeros(n * 2 * nb * size * size)
    x, y = pts["x"] - 0.5, pts["y"] - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    for level, lw in ((lo, 1 - hi_w), (lo + 1, hi_w)):
        wgt = pts["weight"] * lw * peak[level]
        ch = (img * 2 + layer) * nb + level
        for dx, dy, bw in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                           (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            # Out-of-frame points add zero at a clamped index: cheaper than boolean indexing.
            ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            idx = (ch * size + yi.clamp(0, size - 1).long()) * size + xi.clamp(0, size - 1).long()
            acc.index_add_(0, idx.reshape(-1), (wgt * bw * ok).reshape(-1))
    acc = acc.view(n, 2 * nb, size, size)
    out = torch.zeros(n, 2, size, size)
    for b in range(nb):
        out += _blur(acc[:, b::nb], float(levels[b]))
    return out.clamp(0, 1)


def _smooth_fields(p: dict[str, torch.Tensor], size: int, texture: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Retina colour (texture, macula) and illumination, drawn at 1/4 resolution and upsampled.

    Both vary over tens of pixels, so a quarter-resolution grid loses nothing visible and saves
    most of the full-resolution passes (memory bandwidth is what limits the generator on CPU).
    """
    n = p["r"].shape[0]
    low = max(16, size // 4)
    step = size / low
    coords = (torch.arange(low, dtype=torch.float32) + 0.5) * step
    yy, xx = coords.view(1, 1, low, 1), coords.view(1, 1, 1, low)

    def col(name: str) -> torch.Tensor:
        return p[name].view(n, 1, 1, 1)

    tex = F.interpolate(texture, size=(low, low), mode="bicubic", align_corners=False)
    colour = p["base_rgb"].view(n, 3, 1, 1) * (1 + col("texture_amp") * tex)
    # Macula: darker, browner towards the fovea.
    d2f = (xx - col("fovea_x")) ** 2 + (yy - col("fovea_y")) ** 2
    mac = torch.exp(-0.5 * d2f / col("macula_sigma") ** 2)
    mac = mac + 0.5 * torch.exp(-0.5 * d2f / (0.25 * col("macula_sigma")) ** 2)
    colour = colour * (1 - col("macula_dark") * mac * torch.tensor([0.8, 1.0, 1.0]).view(1, 3, 1, 1))
    # Illumination: gain, vignetting towards the rim, a gentle gradient across the field.
    rel = torch.sqrt((xx - col("cx")) ** 2 + (yy - col("cy")) ** 2) / col("r")
    gdx, gdy = torch.cos(col("grad_dir")), torch.sin(col("grad_dir"))
    grad = 1 + col("grad_amp") * ((xx - col("cx")) * gdx + (yy - col("cy")) * gdy) / col("r")
    illum = (col("gain") * grad * (1 - col("vignette") * rel.clamp(max=1.2) ** 2.5)).clamp(min=0.05)
    both = F.interpolate(torch.cat([colour, illum], 1), size=(size, size), mode="bilinear",
                         align_corners=False)
    return both[:, :3], both[:, 3:]


def _render(p: dict[str, torch.Tensor], size: int, noise: torch.Tensor, texture: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (uint8), lesion masks and labels for the drawn parameters ``p``."""
    n = p["r"].shape[0]
    scale = size / 256
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = coords.view(1, 1, size, 1), coords.view(1, 1, 1, size)

    def col(name: str) -> torch.Tensor:
        return p[name].view(n, 1, 1, 1)

    def rgb(values: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(values).view(1, 3, 1, 1)

    img, illum = _smooth_fields(p, size, texture)

    # Optic disc with a brighter, whiter cup (torch.lerp: one pass over the image per layer).
    d_disc = torch.sqrt((xx - col("disc_x")) ** 2 + (yy - col("disc_y")) ** 2)
    disc = torch.sigmoid((col("disc_r") - d_disc) / (0.08 * col("disc_r")))
    img = torch.lerp(img, rgb(_DISC_RGB), col("disc_alpha") * disc)
    cup_x = col("disc_x") - p["side"].view(n, 1, 1, 1) * 0.2 * col("disc_r")
    d_cup = torch.sqrt((xx - cup_x) ** 2 + (yy - col("disc_y")) ** 2)
    cup = torch.sigmoid((col("cup_frac") * col("disc_r") - d_cup) / (0.15 * col("disc_r")))
    img = torch.lerp(img, rgb((1.0, 1.0, 1.0)), col("cup_alpha") * cup)

    vessels = _splat_vessels(p, n, size)

    # Lesions, as Gaussian spots; one call per kind (each has its own colour).
    img_idx = torch.arange(n)

    def gather(sigma_max: float, on: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
               sigma: torch.Tensor, amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = img_idx.view(-1, *([1] * (on.dim() - 1))).expand_as(on)
        # No spot narrower than ~half a pixel: a sub-pixel Gaussian sampled at pixel centres could
        # darken a pixel yet never reach the mask level.
        sig = (sigma[on] * scale).clamp(min=_MIN_SPOT_SIGMA)
        return _splat_spots(n, size, ids[on], x[on], y[on], sig, amp[on],
                            max(sigma_max * scale, _MIN_SPOT_SIGMA))

    disease = p["disease"]
    lobes_on = torch.cat([torch.ones(n, _MAX_HAEM, 1, dtype=torch.bool), p["haem_lobe_on"]], 2)
    lobe_off = torch.cat([torch.zeros(n, _MAX_HAEM, 1, 2), p["haem_lobe"]], 2)
    hs = p["haem_sigma"][..., None] * scale
    red_x = torch.cat([p["ma_x"], (p["haem_x"][..., None] + lobe_off[..., 0] * hs).flatten(1)], 1)
    red_y = torch.cat([p["ma_y"], (p["haem_y"][..., None] + lobe_off[..., 1] * hs).flatten(1)], 1)
    red_on = torch.cat([p["ma_on"], (p["haem_on"][..., None] & lobes_on).flatten(1)], 1)
    red_sigma = torch.cat([p["ma_sigma"], p["haem_sigma"][..., None].expand(-1, -1, 4).flatten(1)], 1)
    red_amp = torch.cat([p["ma_amp"], p["haem_amp"][..., None].expand(-1, -1, 4).flatten(1)], 1)
    red, red_shape = gather(2.8, red_on & disease[:, None], red_x, red_y, red_sigma, red_amp)

    spread = p["ex_spread"][..., None]
    ex_x = (p["ex_x"][..., None] + p["ex_offset"][..., 0] * spread).flatten(1)
    ex_y = (p["ex_y"][..., None] + p["ex_offset"][..., 1] * spread).flatten(1)
    ex_on = (p["ex_on"][..., None] & p["ex_dot_on"]).flatten(1) & disease[:, None]
    ex, ex_shape = gather(1.4, ex_on, ex_x, ex_y, p["ex_sigma"].flatten(1), p["ex_amp"].flatten(1))
    cws, cws_shape = gather(4.5, p["cws_on"] & disease[:, None], p["cws_x"], p["cws_y"],
                            p["cws_sigma"], p["cws_amp"])
    dust, _ = gather(4.0, p["dust_on"], p["dust_x"], p["dust_y"], p["dust_sigma"],
                     p["dust_amp"])
    reflex_sigma = torch.full((n,), 0.9)
    reflex, _ = gather(0.9, p["fovea_reflex"] > 0, p["fovea_x"], p["fovea_y"], reflex_sigma,
                       p["fovea_reflex"])

    # The label rule on the masks decides which drawn diseases stay: one whose lesions fall
    # outside the field of view is not referable, so it is drawn healthy (empty mask).
    dist = torch.sqrt((xx - col("cx")) ** 2 + (yy - col("cy")) ** 2)
    fov = torch.sigmoid((col("r") - dist) / (0.6 * scale)) * torch.sigmoid(
        (col("half_height") - (yy - col("cy")).abs()) / (0.6 * scale))
    masks = ((red_shape > _MASK_LEVEL) | (ex_shape > _MASK_LEVEL) | (cws_shape > _MASK_LEVEL))
    masks = masks[:, None] & (fov > 0.5)
    labels = referable(masks)
    keep = labels.bool().view(n, 1, 1)
    red, ex, cws = red * keep, ex * keep, cws * keep
    masks &= keep[:, None]

    # Dark layers (veins, arteries, red lesions) as one per-channel attenuation, exp(-sum k*x):
    # k = -log(1 - darkening) keeps each layer's full-strength colour; one pass instead of nine.
    dark = torch.tensor([_ARTERY_DARK, _VEIN_DARK, _RED_LESION_DARK])
    att = torch.einsum("nkhw,kc->nchw", torch.cat([vessels, red[:, None].clamp(max=1)], 1),
                       -torch.log1p(-dark))
    img = img * torch.exp(att.neg_())
    img = torch.lerp(img, rgb(_EXUDATE_RGB), ex[:, None])
    img = torch.lerp(img, rgb(_COTTON_WOOL_RGB), cws[:, None])
    img = torch.lerp(img, rgb(_DUST_RGB), dust[:, None])
    img = torch.lerp(img, rgb((1.0, 1.0, 1.0)), reflex[:, None])

    img = _blur(img * (illum * fov), 0.55 * scale)  # optics and JPEG-like softness
    img = img + noise * (col("noise") * (0.3 + 0.7 * fov))
    images = (img.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return images, masks, labels


def generate(
    n: int, size: int = 256, seed: int = 0, p_disease: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw synthetic colour fundus photographs with lesion masks and referable-DR labels.

    Each image shows a fundus (orange-red retina on black, vignetting, optic disc, vessel tree,
    macula) with random eye side, size, centre, colour, illumination and camera noise; about a
    third are cut at top and bottom by a flat camera mask. Diseased images add microaneurysms
    (tiny dark-red dots), dot/blot haemorrhages, hard exudates (bright yellow clusters) and
    cotton-wool spots (pale, fuzzy). Distractors that are *not* disease occur in both classes:
    vessel crossings, varying disc brightness, a foveal light reflex and dust on the optics (grey,
    blurry spots, a different colour from microaneurysms).

    **Label rule.** ``labels[i] == 1`` (referable DR) iff the lesion mask covers at least
    :data:`MIN_LESION_FRACTION` of the image (see :func:`referable`); every diseased image carries
    at least one haemorrhage, exudate cluster or cotton-wool spot so it clears the bar, and a drawn
    disease whose lesions fall outside the field of view is relabelled 0 with its lesions removed.
    Hence label-0 images have empty masks.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Height and width in pixels (square frames).
    seed : int
        Seed. The random draws of image ``i`` depend only on ``(seed, i, size, p_disease)``, not on
        ``n`` (batched floating-point sums may still move a few pixels by one grey level); the
        global torch RNG is neither used nor advanced.
    p_disease : float
        Probability that an image is drawn with disease.

    Returns
    -------
    images : torch.Tensor
        uint8 ``(n, 3, size, size)`` RGB.
    lesion_masks : torch.Tensor
        bool ``(n, 1, size, size)``: microaneurysms, haemorrhages, exudates and cotton-wool spots
        (pixels where the lesion visibly changes the image), inside the field of view.
    labels : torch.Tensor
        int64 ``(n,)``: 1 = referable DR, 0 = no referable DR.

    Examples
    --------
    >>> images, masks, labels = generate(4, size=128, seed=1)
    >>> images.shape, masks.dtype, labels.dtype
    (torch.Size([4, 3, 128, 128]), torch.bool, torch.int64)
    """
    if n < 0 or size < 32:
        raise ValueError(f"need n >= 0 and size >= 32, got n={n}, size={size}")
    if not 0.0 <= p_disease <= 1.0:
        raise ValueError(f"p_disease must be in [0, 1], got {p_disease}")
    if n == 0:
        return (torch.zeros(0, 3, size, size, dtype=torch.uint8),
                torch.zeros(0, 1, size, size, dtype=torch.bool), torch.zeros(0, dtype=torch.long))
    draws, noises, textures = [], [], []
    for i in range(n):
        g = _image_generator(seed, i)
        draws.append(_draw_image(g, size, p_disease))
        # Luminance-dominated sensor noise with a little chroma; coarse choroidal texture.
        lum = torch.randn((1, size, size), generator=g)
        noises.append(lum + 0.35 * torch.randn((3, size, size), generator=g))
        textures.append(torch.randn((3, 12, 12), generator=g) + 0.5 * torch.randn((1, 12, 12),
                                                                                  generator=g))
    p = {k: torch.stack([d[k] for d in draws]) for k in draws[0]}
    with torch.no_grad():
        return _render(p, size, torch.stack(noises), torch.stack(textures))


def laterality(n: int, size: int = 256, seed: int = 0, p_disease: float = 0.5) -> list[str]:
    """Which eye each image of ``generate(n, size, seed, p_disease)`` shows.

    Returns
    -------
    list of str
        ``"R"`` (optic disc on the right of the image) or ``"L"``, as DICOM ImageLaterality.
    """
    return ["R" if float(_draw_image(_image_generator(seed, i), size, p_disease)["side"]) > 0
            else "L" for i in range(n)]


#: What :func:`geometry` reports per image, in continuous pixel coordinates of the frame.
GEOMETRY_KEYS = ("cx", "cy", "r", "half_height", "disc_x", "disc_y", "disc_r", "fovea_x",
                 "fovea_y", "side")


def geometry(n: int, size: int = 256, seed: int = 0, p_disease: float = 0.5
             ) -> dict[str, torch.Tensor]:
    """Where :func:`generate` drew the field of view, the optic disc and the fovea.

    The same draws as ``generate(n, size, seed, p_disease)`` (nothing is rendered), so this is
    the ground truth of anatomy detectors.

    Returns
    -------
    dict of str to torch.Tensor
        float32 ``(n,)`` per name of :data:`GEOMETRY_KEYS`: field-of-view centre ``cx, cy`` and
        radius ``r``; ``half_height`` of the visible band (``2 r`` when not cut); optic disc
        centre ``disc_x, disc_y`` and radius ``disc_r``; fovea centre ``fovea_x, fovea_y``;
        ``side`` +1 for a right eye (disc on the right of the image), -1 for a left eye.
    """
    draws = [_draw_image(_image_generator(seed, i), size, p_disease) for i in range(n)]
    return {k: torch.tensor([float(d[k]) for d in draws], dtype=torch.float32)
            for k in GEOMETRY_KEYS}
