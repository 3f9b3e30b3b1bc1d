"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet classification with deep convolutional
neural networks", NIPS 2012) and ZFNet (Zeiler & Fergus, "Visualizing and understanding
convolutional networks", ECCV 2014), built as the papers describe them.

AlexNet on 227x227x3 (the paper says 224; 227 is what makes the arithmetic work):

    conv1 96@11x11/4 -> ReLU -> LRN -> max pool 3x3/2      # N x 96 x 27 x 27
    conv2 256@5x5 pad 2 -> ReLU -> LRN -> max pool 3x3/2   # N x 256 x 13 x 13
    conv3 384@3x3 pad 1 -> conv4 384@3x3 -> conv5 256@3x3  # N x 256 x 13 x 13
    max pool 3x3/2                                         # N x 256 x 6 x 6
    dropout -> FC6 4096 -> dropout -> FC7 4096 -> FC8 classes

62,378,344 parameters at 1000 classes. ``groups=2`` reproduces the two-GPU split (conv2,
conv4 and conv5 only see the maps of their own GPU; conv3 and the FC layers cross): 60,965,224,
the paper's "60 million". LRN follows the paper (n=5, k=2, alpha=1e-4, beta=0.75); torch's
``LocalResponseNorm`` divides alpha by n, so it is given ``alpha * n``.

Where torchvision differs: its ``alexnet`` is the "one weird trick" variant (Krizhevsky 2014):
64/192/384/256/256 filters, 11x11 conv with padding 2 on 224x224, no LRN, an adaptive 6x6
average pool: 61,100,840 parameters. Keys here follow the same ``features`` / ``classifier``
layout, but the shapes are the 2012 paper's.

Small inputs (CIFAR, 32x32): ``small_input=True`` replaces conv1 by 96@5x5 stride 1 pad 2
(ZFNet: the same) so the pools leave 256 x 3 x 3 maps, and FC6 takes 2,304 inputs. The FC6
size always follows the actual feature map for ``input_size``; an input too small raises a
``ValueError`` naming the layer where the spatial size reaches zero. Nothing is resized.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import Classifier
from cnnlab.registry import register_model


def feature_shape(features: nn.Sequential, in_channels: int, input_size: int) -> torch.Size:
    """Shape (C, H, W) of ``features`` applied to one ``in_channels x input_size x input_size``
    image, computed on the meta device (no arithmetic is done).

    Raises ``ValueError`` naming the layer (``features.<i>``) where the spatial size reaches zero.
    """
    x = torch.zeros(1, in_channels, input_size, input_size, device="meta")
    for i, layer in enumerate(features):
        shape = tuple(x.shape[1:])
        # The layer's own tensors stay where they are: it runs on meta stand-ins of them.
        state = {k: torch.empty_like(v, device="meta")
                 for k, v in (*layer.named_parameters(), *layer.named_buffers())}
        try:
            x = torch.func.functional_call(layer, state, (x,))
        except RuntimeError as e:
            raise ValueError(
                f"Input {in_channels}x{input_size}x{input_size} is too small: the spatial size "
                f"reaches zero at layer features.{i} ({type(layer).__name__}; its input is "
                f"{'x'.join(map(str, shape))}). Use a larger input or small_input=True.") from e
    return x.shape[1:]


def _check_input_size(input_size: int) -> None:
    if not isinstance(input_size, int) or input_size <= 0:
        raise ValueError(f"Invalid value for argument `input_size`: expected a positive int (the "
                         f"side of a square image), received input_size={input_size!r}.")


def _lrn() -> nn.LocalResponseNorm:
    # The paper's b = a / (k + alpha * sum a^2)^beta; torch computes alpha / n * sum, so n * 1e-4.
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


class AlexNet(Classifier):
    """AlexNet (2012) with ``features`` -> ``flatten`` -> ``classifier``.

    Args:
        num_classes: output classes (1000).
        in_channels: input channels (3).
        widths: filters of conv1..conv5 ((96, 256, 384, 384, 256)).
        conv1: (kernel, stride, padding) of conv1 ((11, 4, 0); ZFNet: (7, 2, 1)).
        conv2_stride: stride of conv2 (1; ZFNet: 2).
        ceil_mode: round pooled sizes up, as Caffe did (False; ZFNet: True, for 55 and 13).
        groups: 1 (default) or 2: the paper's two-GPU split of conv2, conv4, conv5.
        lrn: keep the local response normalisation layers (True, as in the paper).
        small_input: 32x32 inputs; conv1 becomes 5x5 stride 1 pad 2.
        input_size: side of the square input the classifier is sized for (227, or 32 with
            ``small_input``).
        dropout: dropout probability before FC6 and FC7 (0.5).
    """

    # Layers that visualisation (activation maps, Grad-CAM) hooks by default.
    feature_layers = {"first_conv": "features.0", "last_conv": "features.12"}

    def __init__(self, num_classes: int = 1000, in_channels: int = 3,
                 widths=(96, 256, 384, 384, 256), conv1=(11, 4, 0), conv2_stride: int = 1,
                 ceil_mode: bool = False, groups: int = 1,
                 lrn: bool = True, small_input: bool = False, input_size: int | None = None,
                 dropout: float = 0.5, hidden: int = 4096):
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"Invalid value for argument `groups`: expected 1 or 2 (the paper's "
                             f"two GPUs), received groups={groups!r}.")
        input_size = (32 if small_input else 227) if input_size is None else input_size
        _check_input_size(input_size)
        k1, s1, p1 = (5, 1, 2) if small_input else conv1
        c1, c2, c3, c4, c5 = widths
        norm = _lrn if lrn else nn.Identity
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, k1, s1, p1), nn.ReLU(inplace=True), norm(),  # N x 96 x 55 x 55
            nn.MaxPool2d(3, 2, ceil_mode=ceil_mode),  # N x 96 x 27 x 27 (overlapping pooling)
            nn.Conv2d(c1, c2, 5, conv2_stride, padding=2 if conv2_stride == 1 else 0,
                      groups=groups), nn.ReLU(inplace=True), norm(),
            nn.MaxPool2d(3, 2, ceil_mode=ceil_mode),  # N x 256 x 13 x 13
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),  # N x 384 x 13 x 13
            nn.Conv2d(c3, c4, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=ceil_mode),  # N x 256 x 6 x 6
        )
        self.input_size = input_size
        self.flatten = nn.Flatten()  # N x 9216
        flat = feature_shape(self.features, in_channels, input_size).numel()
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(inplace=True),  # FC6
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),  # FC7
            nn.Linear(hidden, num_classes),  # FC8
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers
        # (so the ReLUs start with positive inputs), 0 elsewhere.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for m in convs + fcs:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        for m in (convs[1], convs[3], convs[4], fcs[0], fcs[1]):
            nn.init.ones_(m.bias)


@register_model("alexnet", paper="Krizhevsky et al., ImageNet classification with deep "
                "convolutional neural networks", year=2012, input_size=(3, 227, 227))
def alexnet(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None,
            **kwargs) -> AlexNet:
    return AlexNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                   **kwargs)


@register_model("zfnet", paper="Zeiler & Fergus, Visualizing and understanding convolutional "
                "networks", year=2014, input_size=(3, 224, 224))
def zfnet(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None,
          **kwargs) -> AlexNet:
    """ZFNet as in the paper's Figure 3: AlexNet with conv1 96@7x7 stride 2 instead of 11x11
    stride 4 (224 -> 110, pooled to 55), conv2 256@5x5 stride 2 (-> 26, pooled to 13), pooling
    rounded up as in Caffe, dense (ungrouped) conv3-5 on one GPU, 6x6x256 into FC6.
    ``widths=(96, 256, 512, 1024, 512)`` gives the Table 3 variant with 512, 1024, 512 filters
    in conv3-5 (the one the lectures quote).
    """
    kwargs.setdefault("conv1", (7, 2, 1))
    kwargs.setdefault("conv2_stride", 2)
    kwargs.setdefault("ceil_mode", True)
    if input_size is None and not kwargs.get("small_input"):
        input_size = 224
    return AlexNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                   **kwargs)
