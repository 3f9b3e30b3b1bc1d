"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998).

32x32 input; C1 6@5x5 -> S2 2x2/2 -> C3 16@5x5 -> S4 2x2/2 -> C5 120 (a 5x5 conv over the
5x5 maps, i.e. fully connected) -> F6 84 -> output. 61,706 parameters for 1 channel and
10 classes. The paper's C3 connects only some S2 maps to each C3 map and its output is an
RBF layer; like every modern re-implementation we connect all maps and use a linear output.
28x28 inputs (MNIST) are zero-padded by 2 in C1, as the paper did to the 28x28 digits.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.registry import register_model

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def check_lenet_args(activation: str, pool: str, input_size: int) -> None:
    """Validate LeNet-5's options (shared by the torch model and its NumPy twin)."""
    if activation not in ("relu", "tanh"):
        raise ValueError(f"Invalid value for argument `activation`: expected one of "
                         f"['relu', 'tanh'], received {activation!r}.")
    if pool not in ("max", "avg"):
        raise ValueError(f"Invalid value for argument `pool`: expected one of ['avg', 'max'], "
                         f"received {pool!r}.")
    if input_size not in (28, 32):
        raise ValueError(f"Invalid value for argument `input_size`: LeNet-5 takes 32 (or 28, "
                         f"padded by 2), received {input_size}.")


def lenet_block(conv, act, pooling, pool: str) -> tuple:
    """(conv, act, pool), or (conv, pool, act) when pooling by max (shared by both engines).

    A max and a non-decreasing activation commute: relu(max(a, b)) = max(relu(a), relu(b)),
    and likewise for tanh. Pooling first computes the same function, with the same
    gradients, while the activation and its backward touch a quarter of the values (about
    20% of a LeNet-5 training step on a CPU). Average pooling does not commute with a
    nonlinearity, so there the activation comes first.
    """
    return (conv, pooling, act) if pool == "max" else (conv, act, pooling)


class LeNet5(nn.Module):
    """LeNet-5 with `features` (C1..S4), `classifier` (C5..output) like torchvision's models.

    Args:
        num_classes: output classes (10).
        in_channels: input channels (1).
        activation: ``"relu"`` (default, trains faster) or ``"tanh"`` (the paper's squashing).
        pool: ``"max"`` (default) or ``"avg"`` (the paper's subsampling, without its
            trainable coefficient).
        input_size: 32 (the paper) or 28 (MNIST: C1 pads by 2 so S4 is still 16x5x5).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
                 pool: str = "max", input_size: int = 32):
        super().__init__()
        check_lenet_args(activation, pool, input_size)
        act, pooling = _ACTIVATIONS[activation], _POOLS[pool]
        self.input_size = input_size
        c1 = nn.Conv2d(in_channels, 6, 5, padding=2 if input_size == 28 else 0)  # N x 6 x 28 x 28
        c3 = nn.Conv2d(6, 16, 5)  # N x 16 x 10 x 10
        self.features = nn.Sequential(
            *lenet_block(c1, act(), pooling(2, 2), pool),  # S2: N x 6 x 14 x 14
            *lenet_block(c3, act(), pooling(2, 2), pool),  # S4: N x 16 x 5 x 5
        )
        self.flatten = nn.Flatten()  # N x 400
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),  # C5
            act(),
            nn.Linear(120, 84),  # F6
            act(),
            nn.Linear(84, num_classes),  # output
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # Layers that visualisation (activation maps, Grad-CAM) hooks by default.
    feature_layers = {"last_conv": "features.3"}


@register_model("lenet5", paper="LeCun et al., Gradient-based learning applied to document "
                "recognition", year=1998, input_size=(1, 32, 32), num_classes=10)
def lenet5(num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
           pool: str = "max", input_size: int = 32) -> LeNet5:
    return LeNet5(num_classes, in_channels, activation, pool, input_size)
