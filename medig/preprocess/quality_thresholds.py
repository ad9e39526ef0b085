# SPDX-License-Identifier: Apache-2.0
"""Every threshold of the image-quality verdict (:func:`medig.preprocess.assess_quality`), in one
place, with the measurements that chose it.

Measured with ``OMP_NUM_THREADS=1 python bench/quality_thresholds.py --n 100`` (851 images,
2026-12-01), on groups whose answer is known:

- ``real``: scikit-image's real fundus photograph ``retina.jpg`` and 13 variants of it (700 and
  300 px, cut by the frame top/bottom and on all sides, full-frame 4:3 and square crops, red-free
  grey and green channel, 35% darker, small in a large frame, burned-in text, 4:3 frame);
- ``examples``: the 16 bundled ``examples/fundus`` images (JPEG, PNG, TIFF, DICOM, multi-frame);
- ``generated``: 220 :func:`medig.synthetic.generate` photographs at 256, 512 and 1024 px;
- each degradation of :mod:`medig.synthetic.degrade` at its declared gradeable and ungradeable
  severities (:data:`~medig.synthetic.degrade.SEVERITIES`, 63 images each);
- ``non_fundus``: 20 scikit-image data images, 9 of them also inside a black disk (an aperture
  like a fundus camera's), two close crops, and white, grey and black frames.

Result: 851 of 851 verdicts right. The ranges (min-max) each threshold separates:

===================== ===================================== ===================================
threshold             gradeable side                        other side
===================== ===================================== ===================================
max_saturated 0.4     over-exposed, gradeable: <= 0.159     over-exposed, ungradeable: >= 0.623
max_dark 0.5          under-exposed 3 stops: <= 0.002       6 stops and more: >= 0.87
max_shadow 0.2        every gradeable group: 0              small pupil 0.6-0.8: >= 0.283
min_sharpness 0.009   real >= 0.0159 (square macula crop),  defocus 1.2-2.4% of the field:
                      over-exposed >= 0.0195                <= 0.0064
max_edge_density 0.17 every fundus group <= 0.138           warm scenes (coffee in a disk or
                                                            cropped, cat in a disk): >= 0.204
max_vessel_density    fundus <= 0.102                       coffee 0.131-0.155, cat in a disk
0.13                                                        0.158, grass, brick, gravel >= 0.26
max_sharpness 0.09    fundus <= 0.057                       camera in a disk 0.097, coffee
                                                            >= 0.108
min_vessel_density    red-free retina 0.057, its green      moon 0.014, cell 0.0 (in a disk)
0.035 (grey disks)    channel 0.097
max_blue_ratio 0.25   fundus <= 0.169 (real), <= 0.24 when  skin and fur: chelsea 0.251,
                      10% washed out                        astronaut 0.277
full_frame colour     crops: green <= 0.279, blue <= 0.168  (scenes fail on texture first)
0.36 / 0.22
grey_chroma 0.12      grey images: 0                        fundus >= 0.446 (over-exposed)
===================== ===================================== ===================================

The exposure, shadow and focus thresholds sit at least 1.4x from both sides. The texture ones
are nearer (1.2-1.3x from the fundus side for edges and lines): that is why no single texture
sign rejects a red photograph with a circular field (two of the three are needed), and why the
colour, the aperture and the texture are judged together. ``min_fov_diameter`` is a floor of
resolution, not a measurement: at 128 px across the field, a microaneurysm (1/100 to 1/200 of
the field) is below one pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["THRESHOLDS", "QualityThresholds"]


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds of the quality measures and verdict (levels in [0, 1] of full scale).

    Pass a modified copy (``dataclasses.replace(THRESHOLDS, max_shadow=0.5)``) to
    :func:`~medig.preprocess.assess_quality` to run the gate differently.
    """

    # --- measuring -----------------------------------------------------------------------------
    #: Rim of the field left out of every measure, as a fraction of the FOV radius.
    rim: float = 0.05
    #: Pixels (of the 256-px working crop) around clipped, crushed and shadowed areas left out
    #: of the focus, edge and colour measures (their borders are no retinal structure).
    rim_pixels: int = 4
    #: A pixel is washed out when its second-brightest channel reaches this level (red clips first
    #: on a well exposed fundus and carries little detail; when green clips too, it is gone).
    saturated_level: float = 250 / 255
    #: A pixel is crushed when even its brightest channel is below this level.
    dark_level: float = 24 / 255
    #: Block size (working pixels) of the local brightness estimate (about a Gaussian of this
    #: sigma).
    local_cell: int = 8
    #: The field's bright level: this quantile of its local brightness (8 x 8 block means).
    bright_quantile: float = 0.95
    #: A pixel is in shadow when its local brightness is below this share of the bright level.
    shadow_level: float = 0.3
    #: A pixel is an edge when its gradient exceeds this share of the local luminance.
    edge_contrast: float = 0.08
    #: A pixel lies on a thin dark line (a vessel) when the Hessian's line strength exceeds this
    #: share of the local luminance.
    line_contrast: float = 0.04
    #: Colour is judged on unclipped pixels when they make up at least this share of the field.
    min_colour_share: float = 0.1

    # --- colour --------------------------------------------------------------------------------
    #: In a circular field, colour is not judged once this share of it is washed out.
    colour_unreliable: float = 0.15
    #: Mean saturation at or below which the image is grey (red-free, infrared, monochrome).
    grey_chroma: float = 0.12
    #: Red-dominant colour: red the largest mean channel, blue at most this share of R + G + B,
    #: and the hue of the mean colour in this range (degrees; red 0, yellow 60).
    max_blue_ratio: float = 0.25
    hue_range: tuple[float, float] = (-30.0, 60.0)
    #: Without a black surround, stricter: a retina's green and blue shares of R + G + B.
    full_frame_max_green_ratio: float = 0.36
    full_frame_max_blue_ratio: float = 0.22

    # --- verdict -------------------------------------------------------------------------------
    #: Signs of a non-retinal texture: more of the lit field than this on edges, more on thin
    #: dark lines, or more fine detail (sharpness) than any retina shows.
    max_edge_density: float = 0.17
    max_vessel_density: float = 0.13
    max_sharpness: float = 0.09
    #: A grey image in a circular field is a (red-free, infrared) retina only with a vessel
    #: pattern: at least this share of the lit field on thin dark lines.
    min_vessel_density: float = 0.035
    #: Ungradeable when at least this share of the field is washed out / crushed / in shadow.
    max_saturated: float = 0.4
    max_dark: float = 0.5
    max_shadow: float = 0.2
    #: Exposure so extreme (share washed out or crushed) that nothing can be judged.
    blank_exposure: float = 0.9
    #: Ungradeable below this sharpness (RMS Laplacian / local luminance, 256-px working crop).
    min_sharpness: float = 0.009
    #: Ungradeable when the field of view is smaller than this (pixels across).
    min_fov_diameter: float = 128.0


#: The thresholds :func:`~medig.preprocess.assess_quality` uses by default.
THRESHOLDS = QualityThresholds()
