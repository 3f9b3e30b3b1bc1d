"""NumPy twins of the torch models: same constructor arguments, children, state-dict keys
and shapes, registered as ``engine="numpy"`` builders::

    np_model = get_model("lenet5", engine="numpy")
    np_model.load_state_dict(get_model("lenet5").state_dict())   # and the other way round

Every model here is made only of :mod:`cnnlab.scratch.nn` layers; ``backward(dout)`` runs
the children in reverse.
"""

from __future__ import annotations

from cnnlab.models.lenet import lenet_layers
from cnnlab.registry import list_models, register_engine
from cnnlab.scratch import nn


def _run(layers, x):
    for m in layers:
        x = m(x)
    return x


class Chain(nn.Module):
    """A module whose children run in registration order (forward) and reverse (backward)."""

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x

    def backward(self, dout):
        for m in reversed(list(self.children())):
            dout = m.backward(dout)
        return dout


class LeNet5(Chain):
    """LeNet-5 (LeCun et al. 1998), the twin of :class:`cnnlab.models.lenet.LeNet5`:
    ``features`` (C1..S4), ``flatten``, ``classifier`` (C5, F6, output)."""

    feature_layers = {"last_conv": "features.3"}

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
                 pool: str = "max", input_size: int = 32):
        super().__init__()
        features, classifier = lenet_layers(nn, num_classes, in_channels, activation, pool,
                                            input_size)
        self.input_size = input_size
        self.features = nn.Sequential(*features)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(*classifier)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x):
        return self.classifier(self.flatten(x))


class MLP(Chain):
    """Multilayer perceptron: ``flatten`` then ``classifier`` = Linear-ReLU-...-Linear
    (784-2048-1024-10 by default, 3,716,106 parameters); ``dropout`` > 0 adds a Dropout
    after each hidden ReLU, at the same positions as the torch model."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=28,
                 hidden=(2048, 1024), dropout: float = 0.0):
        super().__init__()
        from cnnlab.models.baselines import check_dropout

        check_dropout(dropout)
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        sizes = [in_channels * h * w, *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes))
        self.feature_layers = {"last_hidden": f"classifier.{len(layers) - 1}"}

    def forward_features(self, x):
        return _run([self.flatten, *list(self.classifier)[:-1]], x)  # N x hidden[-1]

    def forward_head(self, x):
        return self.classifier[-1](x)  # N x num_classes


class LinearClassifier(Chain):
    """y = W x + b on the flattened pixels: one template per class (``fc``)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=28):
        super().__init__()
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels * h * w, num_classes)

    feature_layers: dict[str, str] = {}

    def forward_features(self, x):
        return self.flatten(x)  # N x C*H*W

    def forward_head(self, x):
        return self.fc(x)  # N x num_classes


def lenet5(num_classes: int = 10, in_channels: int = 1, **kwargs) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels, **kwargs)


def mlp(num_classes: int = 10, in_channels: int = 1, **kwargs) -> MLP:
    return MLP(num_classes=num_classes, in_channels=in_channels, **kwargs)


def linear(num_classes: int = 10, in_channels: int = 1, **kwargs) -> LinearClassifier:
    return LinearClassifier(num_classes=num_classes, in_channels=in_channels, **kwargs)


BUILDERS = {"lenet5": lenet5, "mlp": mlp, "linear": linear}

# Register a numpy builder for each torch model that exists (the torch family registers
# the name; this module only adds an engine to it).
_known = set(list_models())
for _name, _fn in BUILDERS.items():
    if _name in _known:
        register_engine(_name, "numpy")(_fn)
