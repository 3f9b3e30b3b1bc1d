"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998).

32x32 input; C1 6@5x5 -> S2 2x2/2 -> C3 16@5x5 -> S4 2x2/2 -> C5 120 (a 5x5 conv over the
5x5 maps, i.e. fully connected) -> F6 84 -> output. 61,706 parameters for 1 channel and
10 classes. The paper's C3 connects only some S2 maps to each C3 map and its output is an
RBF layer; like every modern re-implementation we connect all maps and use a linear output.
28x28 inputs (MNIST) are zero-padded by 2 in C1, as the paper did to the 28x28 digits.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.base import Classifier
from cnnlab.registry import register_model


def check_lenet_args(activation: str, pool: str, input_size: int) -> None:
    """Validate LeNet-5's options."""
    if activation not in ("relu", "tanh"):
        raise ValueError(f"Invalid value for argument `activation`: expected one of "
                         f"['relu', 'tanh'], received {activation!r}.")
    if pool not in ("max", "avg"):
        raise ValueError(f"Invalid value for argument `pool`: expected one of ['avg', 'max'], "
                         f"received {pool!r}.")
    if input_size not in (28, 32):
        raise ValueError(f"Invalid value for argument `input_size`: LeNet-5 takes 32 (or 28, "
                         f"padded by 2), received {input_size}.")


def lenet_layers(nn_lib, num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
                 pool: str = "max", input_size: int = 32) -> tuple[list, list]:
    """LeNet-5's (features, classifier) layer lists, built from ``nn_lib``: ``torch.nn``, or
    ``cnnlab.scratch.nn`` (same layer names) for the NumPy twin, so both engines declare the
    same network once.

    With max pooling each block is conv -> pool -> activation: a max and a non-decreasing
    activation commute (relu(max(a, b)) = max(relu(a), relu(b)), likewise tanh), so pooling
    first is the same function with the same gradients while the activation and its
    backward touch a quarter of the values (about 20% of a LeNet-5 training step on a CPU).
    Average pooling (the paper's subsampling) does not commute with a nonlinearity, so there
    the activation comes first.
    """
    check_lenet_args(activation, pool, input_size)
    act = {"relu": nn_lib.ReLU, "tanh": nn_lib.Tanh}[activation]
    pooling = {"max": nn_lib.MaxPool2d, "avg": nn_lib.AvgPool2d}[pool]

    def block(conv):
        return [conv, pooling(2, 2), act()] if pool == "max" else [conv, act(), pooling(2, 2)]

    c1 = nn_lib.Conv2d(in_channels, 6, 5, padding=2 if input_size == 28 else 0)
    features = [
        *block(c1),  # C1, S2: N x 6 x 28 x 28 -> N x 6 x 14 x 14
        *block(nn_lib.Conv2d(6, 16, 5)),  # C3, S4: N x 16 x 10 x 10 -> N x 16 x 5 x 5
    ]
    classifier = [
        nn_lib.Linear(16 * 5 * 5, 120), act(),  # C5 (on the flattened N x 400)
        nn_lib.Linear(120, 84), act(),  # F6
        nn_lib.Linear(84, num_classes),  # output
    ]
    return features, classifier


class LeNet5(Classifier):
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
        features, classifier = lenet_layers(nn, num_classes, in_channels, activation, pool,
                                            input_size)
        self.input_size = input_size
        self.features = nn.Sequential(*features)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(*classifier)

    # Layers that visualisation (activation maps, Grad-CAM) hooks by default.
    feature_layers = {"last_conv": "features.3"}


@register_model("lenet5", paper="LeCun et al., Gradient-based learning applied to document "
                "recognition", year=1998, input_size=(1, 32, 32), num_classes=10)
def lenet5(num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
           pool: str = "max", input_size: int = 32) -> LeNet5:
    return LeNet5(num_classes, in_channels, activation, pool, input_size)
