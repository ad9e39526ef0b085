# SPDX-License-Identifier: Apache-2.0
"""Put the audited model on its device, in channels_last only where that is faster.

channels_last speeds up sliding-window convolutions (bench/RESULTS.md, "levers"), and the adaptive
integrator hands the model channels_last path points. A vision transformer has one convolution,
the patch embedding (kernel = stride), and then works on token sequences: there channels_last
buys nothing and its weight layout only adds conversions (bench/channels_last.py). So the layout
is chosen per model from its convolutions, not applied to every model.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["prefers_channels_last", "to_device"]

#: Sliding-window convolutions (kernel larger than stride) a model needs to count as a CNN.
MIN_SLIDING_CONVS = 2


def _is_sliding_conv(module: nn.Module) -> bool:
    # Duck-typed so scripted convolutions count too.
    kernel, stride = getattr(module, "kernel_size", None), getattr(module, "stride", None)
    weight = getattr(module, "weight", None)
    if not (isinstance(kernel, (tuple, list)) and isinstance(stride, (tuple, list))
            and isinstance(weight, torch.Tensor) and weight.ndim == 4):
        return False
    return any(k > 1 and s < k for k, s in zip(kernel, stride))


def prefers_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` is convolutional enough for channels_last to pay off: at least
    :data:`MIN_SLIDING_CONVS` convolutions whose kernel slides (kernel > stride). ResNets,
    EfficientNets, ConvNeXts and DenseNets are; ViT and Swin (patch embedding only) are not."""
    count = 0
    for module in model.modules():
        if _is_sliding_conv(module):
            count += 1
            if count >= MIN_SLIDING_CONVS:
                return True
    return False


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device`` in eval mode, channels_last when :func:`prefers_channels_last`."""
    if prefers_channels_last(model):
        try:
            # torch's overloads of Module.to omit (device, memory_format), which it accepts
            return model.to(  # type: ignore[call-overload]
                device, memory_format=torch.channels_last).eval()
        except (RuntimeError, TypeError):  # e.g. scripted or exported programs
            pass
    return model.to(device).eval()
