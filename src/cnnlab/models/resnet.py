"""ResNet (He, Zhang, Ren & Sun, "Deep residual learning for image recognition", CVPR 2016).

ImageNet ResNets (``resnet18/34/50/101/152``, Table 1): a 7x7/2 stem and 3x3/2 max pool, four
stages of basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4) blocks, global average pool, FC.
Module names, parameter and buffer shapes are torchvision's exactly, so its checkpoints load
with ``strict=True``: 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808
parameters. Like torchvision (and unlike the paper's v1), the bottleneck strides in its 3x3
conv ("ResNet v1.5"); downsampling shortcuts are 1x1 convolutions + batch norm (option B).
``small_input=True`` (32x32 inputs) makes the stem a 3x3 stride-1 conv and drops the max
pool, so layer4 sees 4x4 instead of 1x1 maps.

CIFAR ResNets (``resnet20/32/44/56/110``, Section 4.2): 6n+2 layers: a 3x3 conv with 16
filters, three stages of n basic blocks with 16, 32, 64 filters on 32, 16, 8 pixel maps,
global average pool, FC. Shortcuts are option A, parameter-free: identity, and where the shape
changes, every second pixel with the new channels zero-padded. 269,722 / 464,154 / 658,586 /
853,018 / 1,727,962 parameters at 10 classes. ``plain20/32/44/56/110`` are the same stacks
without shortcuts (the paper's Figure 6 shows the deeper plain net training *worse*).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import Classifier
from cnnlab.registry import register_model


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """3x3 -> 3x3, plus the shortcut: N x planes x H/stride x W/stride."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride here, v1.5) -> 1x1 (expand x4), plus the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Classifier):
    """ImageNet ResNet with torchvision's module names.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        num_classes: output classes (1000).
        in_channels: input channels (3).
        small_input: 3x3 stride-1 stem without max pool, for 32x32 inputs.
        zero_init_residual: zero the last BN scale of each block (each block starts as identity).
    """

    feature_layers = {"first_conv": "conv1", "last_conv": "layer4"}

    def __init__(self, block, layers, num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, zero_init_residual: bool = False):
        super().__init__()
        self.inplanes = 64
        self.small_input = small_input
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)  # /2
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # /4: N x 64 x 56 x 56
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])  # N x 64e x 56 x 56
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)  # N x 128e x 28 x 28
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)  # N x 256e x 14 x 14
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)  # N x 512e x 7 x 7
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(last_bn.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # N x 64 x 56 x 56
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # N x 512e x 7 x 7

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))  # N x num_classes


class ShortcutA(nn.Module):
    """Option A shortcut: x[:, :, ::stride, ::stride] with ``extra`` zero channels on each side
    (parameter-free). N x C x H x W -> N x (C + 2 extra) x H/stride x W/stride."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.extra, self.extra))


class CifarBlock(nn.Module):
    """3x3 -> BN -> ReLU -> 3x3 -> BN (+ shortcut) -> ReLU; ``shortcut=False`` for plain nets."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if shortcut:
            same = stride == 1 and in_planes == planes
            self.shortcut = nn.Identity() if same else ShortcutA(stride, (planes - in_planes) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class CifarResNet(Classifier):
    """The paper's CIFAR-10 ResNet (or plain net) with 6n+2 layers, for 32x32 inputs.

    Args:
        depth: 20, 32, 44, 56, 110 (any 6n+2).
        num_classes: output classes (10).
        in_channels: input channels (3).
        shortcut: identity shortcuts (True: ResNet; False: the plain baseline).
    """

    feature_layers = {"first_conv": "conv1", "last_conv": "layer3"}

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3,
                 shortcut: bool = True):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"Invalid value for argument `depth`: expected 6n+2 (20, 32, 44, 56, "
                             f"110, ...), received depth={depth!r}.")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, 16)  # N x 16 x 32 x 32
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):  # 32x32, 16x16, 8x8 maps
            blocks = []
            for i in range(n):
                blocks.append(CifarBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # N x 64 x 1 x 1
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # the paper's init [13]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # N x 16 x 32 x 32
        return self.layer3(self.layer2(self.layer1(x)))  # N x 64 x 8 x 8

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))  # N x num_classes


_PAPER = "He et al., Deep residual learning for image recognition"
_IMAGENET = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
             "resnet50": (Bottleneck, (3, 4, 6, 3)), "resnet101": (Bottleneck, (3, 4, 23, 3)),
             "resnet152": (Bottleneck, (3, 8, 36, 3))}


def _register_imagenet(name: str) -> None:
    block, layers = _IMAGENET[name]

    def build(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
        return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **kwargs)

    build.__name__ = name
    build.fixed_args = ("block", "layers")  # set here: not constructor options for users
    register_model(name, paper=_PAPER, year=2016, input_size=(3, 224, 224))(build)
    globals()[name] = build


def _register_cifar(name: str, depth: int, shortcut: bool) -> None:
    def build(num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels,
                           shortcut=shortcut, **kwargs)

    build.__name__ = name
    build.fixed_args = ("depth", "shortcut")  # the name fixes them
    register_model(name, paper=_PAPER + (" (CIFAR-10)" if shortcut else " (plain baseline)"),
                   year=2016, input_size=(3, 32, 32), num_classes=10)(build)
    globals()[name] = build


for _name in _IMAGENET:
    _register_imagenet(_name)
for _depth in (20, 32, 44, 56, 110):
    _register_cifar(f"resnet{_depth}", _depth, shortcut=True)
    _register_cifar(f"plain{_depth}", _depth, shortcut=False)
