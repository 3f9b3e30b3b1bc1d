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
