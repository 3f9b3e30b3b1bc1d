"""Baselines that are not CNNs: a softmax (linear) classifier and a multi-layer perceptron on
raw pixels. They show what convolution buys: the MLP 784-2048-1024-10 already has 3,716,106
parameters (784*2048 + 2048 + 2048*1024 + 1024 + 1024*10 + 10), sees no spatial structure and
must learn a pattern again at every position.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import Classifier
from cnnlab.registry import register_model


def _flat_size(in_channels: int, input_size) -> int:
    """C*H*W for ``input_size`` an int (square) or (H, W)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    for arg, v in (("in_channels", in_channels), ("input_size", h), ("input_size", w)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"Invalid value for argument `{arg}`: expected a positive int, "
                             f"received {arg}={v!r}.")
    return in_channels * h * w


def check_dropout(p) -> None:
    """A dropout probability must be a number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"Invalid value for argument `dropout`: expected a probability in "
                         f"[0, 1), received dropout={p!r}.")


class MLP(Classifier):
    """``flatten`` -> ``classifier`` = [Linear -> ReLU] per hidden size -> Linear.

    The children and keys are those of the NumPy twin (:class:`cnnlab.scratch.models.MLP`):
    ``classifier.0``, ``classifier.2``, ``classifier.4`` for 784-2048-1024-10.

    Args:
        num_classes: output classes (10).
        in_channels: input channels (1).
        input_size: side of the square input, or (H, W) (28: 784 inputs for one channel).
        hidden: hidden layer sizes ((2048, 1024)).
        dropout: probability of zeroing each hidden unit after its ReLU while training
            (0.0: no Dropout layer at all, so the keys are the ones above). With dropout the
            Linear layers sit at ``classifier.0, .3, .6``, as in torchvision's VGG classifier.
            Hinton et al. (2015, section 3) used dropout on the 1,200-unit teacher;
            Srivastava et al. (2014) recommend p = 0.5 for hidden units.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=28,
                 hidden=(2048, 1024), dropout: float = 0.0):
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or any(not isinstance(h, int) or h <= 0 for h in hidden):
            raise ValueError(f"Invalid value for argument `hidden`: expected a non-empty list of "
                             f"positive ints, received hidden={hidden!r}.")
        check_dropout(dropout)
        sizes = [_flat_size(in_channels, input_size), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.flatten = nn.Flatten()  # N x C*H*W
        self.classifier = nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes))
        self.feature_layers = {"last_hidden": f"classifier.{len(layers) - 1}"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[:-1](self.flatten(x))  # N x hidden[-1]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](x)  # N x num_classes


class LinearClassifier(Classifier):
    """Softmax classifier on raw pixels: y = W x + b (``flatten`` -> ``fc``), one template (row
    of W) per class: ``fc.weight[k]`` reshaped to (C, H, W) is the template of class k.
    ``forward_features`` is the flattened image.
    """

    feature_layers: dict[str, str] = {}

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=28):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(_flat_size(in_channels, input_size), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(x)  # N x C*H*W

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # N x num_classes


@register_model("mlp", paper="Multi-layer perceptron baseline (lectures: 784-2048-1024-10)",
                year=None, input_size=(1, 28, 28), num_classes=10)
def mlp(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, **kwargs) -> MLP:
    return MLP(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs)


@register_model("linear", paper="Linear (softmax) classifier on raw pixels", year=None,
                input_size=(1, 28, 28), num_classes=10)
def linear(num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
           **kwargs) -> LinearClassifier:
    return LinearClassifier(num_classes=num_classes, in_channels=in_channels,
                            input_size=input_size, **kwargs)
