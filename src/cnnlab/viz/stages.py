"""Which layers of a network are its *stages*: the maps worth a picture.

Below :mod:`cnnlab.viz.common` and :mod:`cnnlab.viz.activations` (both read it; it reads
neither), so the layer lookup of ``common`` and the recorder of ``activations`` share one list
without importing each other.
"""

from __future__ import annotations

from torch import nn

# Top-level children that are not a stage worth a picture: normalisation (the activation after
# it shows the same map), regularisation, reshapes, the classifier head.
_SKIP = (nn.BatchNorm2d, nn.LocalResponseNorm, nn.Dropout, nn.Flatten, nn.Identity,
         nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)
_HEAD_NAMES = {"fc", "classifier", "aux1", "aux2", "avgpool", "flatten", "dropout", "head"}


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The named stages to show for ``model``, in forward order: ``[(name, module), ...]``.

    Sequential feature stacks (a ``features`` ``nn.Sequential``): every child (conv, pool,
    activation, LRN) but batch norm and dropout. Branched/residual nets: every top-level child except norms, dropout,
    identity and the head (so ``conv1``, ``relu``, ``layer1``.. for ResNet; ``conv1``,
    ``maxpool1``, ``conv2``, ``conv3``, ``inception3a``.. for GoogLeNet). MLP/linear: the
    hidden Linear/ReLU outputs (1-D), or ``fc`` for the linear classifier.
    Names are ``model.get_submodule`` paths.
    """
    feats = getattr(model, "features", None)
    if isinstance(feats, nn.Sequential) and len(feats):
        return [(f"features.{i}", m) for i, m in enumerate(feats)
                if not isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.Identity))]
    out = [(n, m) for n, m in model.named_children()
           if n not in _HEAD_NAMES and not isinstance(m, _SKIP)]
    names = [n for n, _ in out]
    if "maxpool" in names and "relu" in names and names.index("maxpool") < names.index("relu"):
        # torchvision's ResNet registers the stem's maxpool before bn1/relu but runs it after
        out.insert(names.index("relu"), out.pop(names.index("maxpool")))
    if out:
        return out
    cls = getattr(model, "classifier", None)
    if isinstance(cls, nn.Sequential):  # MLP: the hidden layers, after their activation
        return [(f"classifier.{i}", m) for i, m in enumerate(cls)
                if not isinstance(m, nn.Linear) or i == len(cls) - 1]
    return [(n, m) for n, m in model.named_children() if isinstance(m, nn.Linear)]
