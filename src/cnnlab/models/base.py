"""The two halves every cnnlab classifier has, as torchvision's models do."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``forward(x) = forward_head(forward_features(x))``.

    ``forward_features`` gives the last feature maps (what activation maps and Grad-CAM look
    at), ``forward_head`` the logits from them. The defaults fit the plain stacks (LeNet-5,
    AlexNet, VGG): ``features``, then ``flatten`` and ``classifier``; other models override
    the halves.
    """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def head_names(self) -> list[str]:
        """Dotted names of the output layers: the last ``nn.Linear`` registered (``fc``,
        ``classifier.6``, ...); models with more heads (GoogLeNet's auxiliaries) add theirs."""
        return [n for n, m in self.named_modules() if isinstance(m, nn.Linear)][-1:]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every output layer by a freshly initialised ``nn.Linear(in, num_classes)``
        (timm's API): the start of fine-tuning on a task with other classes."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Invalid value for argument `num_classes`. Expected a positive "
                             f"int. Received num_classes={num_classes!r}.")
        for name in self.head_names():
            parent_name, _, attr = name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            old = getattr(parent, attr)
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
            setattr(parent, attr, new.to(device=old.weight.device, dtype=old.weight.dtype))
        self.num_classes = num_classes
