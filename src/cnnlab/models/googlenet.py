"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015),
as in the paper's Table 1 and Figure 3.

    conv1 64@7x7/2 -> max pool 3x3/2 -> LRN               # N x 64 x 56 x 56
    conv2 64@1x1 -> conv3 192@3x3 -> LRN -> max pool 3x3/2  # N x 192 x 28 x 28
    inception 3a, 3b -> max pool                           # N x 480 x 14 x 14
    inception 4a..4e -> max pool                           # N x 832 x 7 x 7
    inception 5a, 5b -> global average pool                # N x 1024 x 1 x 1
    dropout 0.4 -> linear                                  # N x num_classes

Every convolution has a bias and a ReLU; there is no batch norm (it came later, in Inception
v2). Pools round up (``ceil_mode``) as Caffe did, so 112 -> 56 -> 28 -> 14 -> 7. Two auxiliary
classifiers (after 4a and 4d: 5x5/3 average pool, 128@1x1, FC 1024, dropout 0.7, linear) add
their losses with weight 0.3 during training and are not run at inference. 6,998,552
parameters without them at 1000 classes (the paper's ~6.8M counts weights only).

Where torchvision differs: batch norm after every convolution (``conv.bn``, convs without
bias), a 3x3 where the paper's 5x5 branch is (a bug kept for its checkpoints), and an extra
max pool padding: 6,624,904 parameters. Key names follow torchvision's (``conv1.conv``,
``inception3a.branch2.1.conv``, ``aux1.fc1``) so the two can be compared side by side.

Small inputs (32x32): ``small_input=True`` makes conv1 a 3x3 stride-1 convolution and drops the
first two max pools, so inception 3 sees 32x32, 4 sees 16x16 (the auxiliary pools give 4x4, as
at 224) and 5 sees 8x8. The final pool is global (adaptive), which at 224 is the paper's 7x7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import Classifier
from cnnlab.registry import register_model


class BasicConv2d(nn.Module):
    """Convolution + ReLU (the paper's unit; torchvision adds batch norm here)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class Inception(nn.Module):
    """The inception module: four branches concatenated by depth (dim 1).

    branch1: 1x1 (``ch1x1``); branch2: 1x1 (``ch3x3red``) -> 3x3 (``ch3x3``); branch3: 1x1
    (``ch5x5red``) -> 5x5 (``ch5x5``); branch4: 3x3/1 max pool -> 1x1 (``pool_proj``).
    Output: N x (ch1x1 + ch3x3 + ch5x5 + pool_proj) x H x W.

    ``naive=True`` builds the module without the 1x1 reductions (Figure 2a): branches 1x1,
    3x3, 5x5 straight on the input and the pool passed through, so the depth grows by
    ``in_channels`` at every module (on 28x28x256 with 128, 192, 96: 28x28x672). The
    ``*red`` and ``pool_proj`` arguments are then ignored.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, naive: bool = False):
        super().__init__()
        self.naive = naive
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        if naive:
            self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3, 3, padding=1))
            self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5, 5, padding=2))
            self.branch4 = nn.Sequential(pool)
            self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels
        else:
            self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, 1),
                                         BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
            self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, 1),
                                         BasicConv2d(ch5x5red, ch5x5, 5, padding=2))
            self.branch4 = nn.Sequential(pool, BasicConv2d(in_channels, pool_proj, 1))
            self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)  # N x out_channels x H x W


class InceptionAux(nn.Module):
    """Auxiliary classifier: 5x5/3 average pool -> 128@1x1 -> FC 1024 -> dropout 0.7 -> linear."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)  # N x C x 4 x 4 from 14 x 14
        self.conv = BasicConv2d(in_channels, 128, 1)  # N x 128 x 4 x 4
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)  # N x 2048
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


# Table 1: (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per module.
_TABLE = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(Classifier):
    """GoogLeNet (Inception v1).

    Args:
        num_classes: output classes (1000).
        in_channels: input channels (3).
        aux_logits: build the two auxiliary classifiers (True, as trained in the paper).
        small_input: 32x32 inputs: 3x3 stride-1 conv1, no max pool after conv1 and conv3.
        dropout: before the final linear layer (0.4).

    In training mode with ``aux_logits``, ``forward`` returns the main logits and keeps the
    auxiliary logits; ``auxiliary_loss(target)`` then gives 0.3 x (sum of their cross-entropy
    losses) to add to the main loss. In eval mode the auxiliary heads do not run and
    ``auxiliary_loss`` returns ``None``.
    """

    feature_layers = {"first_conv": "conv1.conv", "last_conv": "inception5b"}
    aux_weight = 0.3  # the paper's discount for the auxiliary losses

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 small_input: bool = False, dropout: float = 0.4):
        super().__init__()
        self.aux_logits = aux_logits
        self.small_input = small_input
        if small_input:
            self.conv1 = BasicConv2d(in_channels, 64, 3, padding=1)  # N x 64 x 32 x 32
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, 64, 7, stride=2, padding=3)  # N x 64 x 112 x 112
            self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # N x 64 x 56 x 56
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # Caffe's values
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)  # N x 192 x 56 x 56
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool2 = nn.Identity() if small_input else nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = Inception(*_TABLE["3a"])  # N x 256 x 28 x 28
        self.inception3b = Inception(*_TABLE["3b"])  # N x 480 x 28 x 28
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)  # N x 480 x 14 x 14
        self.inception4a = Inception(*_TABLE["4a"])  # N x 512 x 14 x 14
        self.inception4b = Inception(*_TABLE["4b"])
        self.inception4c = Inception(*_TABLE["4c"])
        self.inception4d = Inception(*_TABLE["4d"])  # N x 528 x 14 x 14
        self.inception4e = Inception(*_TABLE["4e"])  # N x 832 x 14 x 14
        self.maxpool4 = nn.MaxPool2d(3, 2, ceil_mode=True)  # N x 832 x 7 x 7
        self.inception5a = Inception(*_TABLE["5a"])
        self.inception5b = Inception(*_TABLE["5b"])  # N x 1024 x 7 x 7
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes)
            self.aux2 = InceptionAux(528, num_classes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # N x 1024 x 1 x 1 (the paper's 7x7 average pool)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._aux_outputs: list[torch.Tensor] = []
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # Caffe's bvlc_googlenet uses "xavier"
                nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._aux_outputs = []
        run_aux = self.aux_logits and self.training
        x = self.lrn1(self.maxpool1(self.conv1(x)))  # N x 64 x 56 x 56
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))  # N x 192 x 28 x 28
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        if run_aux:
            self._aux_outputs.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # N x 528 x 14 x 14
        if run_aux:
            self._aux_outputs.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))  # N x 832 x 7 x 7
        return self.inception5b(self.inception5a(x))  # N x 1024 x 7 x 7

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))  # N x num_classes

    def head_names(self) -> list[str]:
        """The main classifier and, when built, both auxiliary classifiers' output layers."""
        return ["fc"] + (["aux1.fc2", "aux2.fc2"] if self.aux_logits else [])

    @property
    def aux_outputs(self) -> list[torch.Tensor]:
        """Logits of the auxiliary classifiers from the last training-mode forward ([] in eval)."""
        return list(self._aux_outputs)

    def auxiliary_loss(self, target: torch.Tensor, criterion=F.cross_entropy):
        """``aux_weight`` x the summed losses of the auxiliary heads from the last forward pass,
        or ``None`` when they did not run (eval mode, or ``aux_logits=False``)."""
        if not self._aux_outputs:
            return None
        return self.aux_weight * sum(criterion(a, target) for a in self._aux_outputs)


@register_model("googlenet", paper="Szegedy et al., Going deeper with convolutions", year=2015,
                input_size=(3, 224, 224))
def googlenet(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
