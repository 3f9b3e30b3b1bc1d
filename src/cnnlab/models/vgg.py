"""VGG (Simonyan & Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015), built from the paper's Table 1 configurations A, B, D, E.

Only 3x3 convolutions (stride 1, pad 1) and 2x2 max pools (stride 2): two stacked 3x3 layers
see 5x5 and three see 7x7, with fewer parameters (3 * 9C^2 vs 49C^2) and more non-linearities
than one large filter. No LRN (the paper found it did not help; its configuration A-LRN is not
built). 224x224 input -> 512 x 7 x 7 -> FC 4096 -> FC 4096 -> classes, dropout 0.5.
138,357,544 (vgg16) and 143,667,240 (vgg19) parameters at 1000 classes; the ``_bn`` variants add
batch norm after every convolution (not in the paper; torchvision's layout).

Keys and shapes equal torchvision's (``features.<i>``, ``classifier.{0,3,6}``), so its
checkpoints load with ``strict=True``. torchvision puts an ``AdaptiveAvgPool2d(7)`` between
features and classifier; at 224x224 it is the identity and it silently resizes other inputs,
so cnnlab has no such layer: FC6 is sized for the actual feature map of ``input_size``
(``input_size=32``, CIFAR: 512 x 1 x 1, so FC6 has 512 inputs). ``small_input=True`` means
``input_size=32``.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.alexnet import _check_input_size, feature_shape
from cnnlab.models.base import Classifier
from cnnlab.registry import register_model

# Table 1 of the paper: numbers are 3x3 conv widths, "M" a 2x2/2 max pool.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # vgg11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # vgg13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],  # vgg16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],  # vgg19
}


def make_layers(cfg: list[int | str], in_channels: int = 3, batch_norm: bool = False) -> nn.Sequential:
    """The convolutional part of VGG from a configuration list like ``[64, "M", 128, ...]``."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(Classifier):
    """VGG with ``features`` -> ``flatten`` -> ``classifier`` (torchvision's key layout).

    Args:
        cfg: a configuration list (see ``CONFIGS``).
        num_classes: output classes (1000).
        in_channels: input channels (3).
        batch_norm: batch norm after each convolution (the ``_bn`` variants).
        input_size: side of the square input FC6 is sized for (224; 32 with ``small_input``).
        small_input: shorthand for ``input_size=32``.
        dropout: dropout probability after FC6 and FC7 (0.5).
    """

    def __init__(self, cfg, num_classes: int = 1000, in_channels: int = 3,
                 batch_norm: bool = False, input_size: int | None = None,
                 small_input: bool = False, dropout: float = 0.5):
        super().__init__()
        input_size = (32 if small_input else 224) if input_size is None else input_size
        _check_input_size(input_size)
        self.input_size = input_size
        self.features = make_layers(cfg, in_channels, batch_norm)  # N x 512 x 7 x 7 at 224
        self.flatten = nn.Flatten()  # N x 25088
        flat = feature_shape(self.features, in_channels, input_size).numel()
        self.classifier = nn.Sequential(
            nn.Linear(flat, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),  # FC6
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),  # FC7
            nn.Linear(4096, num_classes),  # FC8
        )
        last_conv = max(i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d))
        self.feature_layers = {"first_conv": "features.0", "last_conv": f"features.{last_conv}"}
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's (and the paper's later Glorot-free recipe): He init for convs,
        # N(0, 0.01) for the FC layers, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


_PAPER = "Simonyan & Zisserman, Very deep convolutional networks for large-scale image recognition"


def _register(name: str, cfg: str, batch_norm: bool) -> None:
    def build(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None,
              **kwargs) -> VGG:
        return VGG(CONFIGS[cfg], num_classes=num_classes, in_channels=in_channels,
                   batch_norm=batch_norm, input_size=input_size, **kwargs)

    build.__name__ = name
    build.fixed_args = ("cfg", "batch_norm")  # the name fixes them
    build.__doc__ = f"VGG configuration {cfg}{' with batch norm' if batch_norm else ''}."
    register_model(name, paper=_PAPER, year=2015, input_size=(3, 224, 224))(build)
    globals()[name] = build


for _name, _cfg in (("vgg11", "A"), ("vgg13", "B"), ("vgg16", "D"), ("vgg19", "E")):
    _register(_name, _cfg, batch_norm=False)
    _register(_name + "_bn", _cfg, batch_norm=True)
