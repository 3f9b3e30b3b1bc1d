"""Layers of the NumPy engine, named and parameterised exactly like ``torch.nn``.

A :class:`Module` holds :class:`Parameter` s (``.data`` and ``.grad`` arrays), buffers and
child modules; ``forward(x)`` caches what ``backward(dout)`` needs, and ``backward``
*accumulates* parameter gradients into ``.grad`` (like torch; call ``zero_grad()``) and
returns the input gradient. State dicts are ``dict[str, np.ndarray]`` with torch's keys
and shapes, so weights move between a NumPy model and its torch twin with no mapping::

    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in np_model.state_dict().items()})
    np_model.load_state_dict(torch_model.state_dict())
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.scratch import functional as F
from cnnlab.scratch.module import (  # noqa: F401  (re-exported: the torch.nn-like namespace)
    Module, Parameter, Sequential, default_rng, manual_seed)

def _uniform(shape, fan_in, dtype):
    # torch's default (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / math.sqrt(fan_in) if fan_in else 0
    return default_rng().uniform(-bound, bound, shape).astype(dtype)


class Conv2d(Module):
    """``(N, in_channels, H, W)`` -> ``(N, out_channels, H', W')``; weight
    ``(out_channels, in_channels, kh, kw)``. ``needs_input_grad = False`` skips dx."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride, self.padding = F.pair(stride, "stride"), F.pair(padding, "padding")
        if min(self.padding) < 0:
            raise ValueError(f"Conv2d: padding must be >= 0, got {padding}.")
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = Parameter(_uniform((out_channels, in_channels, *self.kernel_size),
                                         fan_in, dtype))
        self.bias = Parameter(_uniform((out_channels,), fan_in, dtype)) if bias else None
        self.needs_input_grad = True
        self._workspace = {}  # scratch buffers reused from step to step (see F.conv2d_forward)

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        out, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding,
                                            workspace=self._workspace)
        return out

    def backward(self, dout):
        dx, dw, db = F.conv2d_backward(dout, self._cache, self.needs_input_grad)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class Linear(Module):
    """``(N, in_features)`` -> ``(N, out_features)``; weight ``(out_features, in_features)``."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_uniform((out_features, in_features), in_features, dtype))
        self.bias = Parameter(_uniform((out_features,), in_features, dtype)) if bias else None
        self.needs_input_grad = True

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        out, self._cache = F.linear_forward(x, self.weight.data, b)
        return out

    def backward(self, dout):
        dx, dw, db = F.linear_backward(dout, self._cache)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx if self.needs_input_grad else None

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class _Stateless(Module):
    """A layer without parameters: ``forward`` stores the kernel's cache for ``backward``."""

    _kernel = None  # name of the functional op: F.<name>_forward / F.<name>_backward

    def _kwargs(self):
        return {}

    def forward(self, x):
        out, self._cache = getattr(F, f"{self._kernel}_forward")(x, **self._kwargs())
        return out

    def backward(self, dout):
        return getattr(F, f"{self._kernel}_backward")(dout, self._cache)


class _Pool(_Stateless):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = 0

    def _kwargs(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool):
    _kernel = "max_pool2d"


class AvgPool2d(_Pool):
    _kernel = "avg_pool2d"


class MinPool2d(_Pool):
    _kernel = "min_pool2d"


class StochasticPool2d(_Pool):
    """Zeiler & Fergus stochastic pooling; `seed` makes the training draws reproducible.
    ``forward(x, draws=...)`` injects the uniform draws ``(N, C, H', W')`` directly."""

    _kernel = "stochastic_pool2d"

    def __init__(self, kernel_size, stride=None, seed=None):
        super().__init__(kernel_size, stride)
        self.rng = None if seed is None else np.random.default_rng(seed)

    def forward(self, x, draws=None):
        out, self._cache = F.stochastic_pool2d_forward(
            x, self.kernel_size, self.stride, self.training, self.rng or default_rng(), draws)
        return out


class KMaxPool(_Stateless):
    """``(N, C, H, W)`` -> ``(N, C, k)``: the k largest values of each map, in order."""

    _kernel = "kmax_pool"

    def __init__(self, k):
        super().__init__()
        self.k = k

    def _kwargs(self):
        return {"k": self.k}

    def extra_repr(self):
        return f"k={self.k}"


class AdaptiveAvgPool2d(_Stateless):
    """Only ``output_size=(1, 1)`` (global average pooling):
    ``(N, C, H, W)`` -> ``(N, C, 1, 1)``."""

    _kernel = "global_avg_pool2d"

    def __init__(self, output_size=(1, 1)):
        super().__init__()
        if F.pair(output_size, "output_size") != (1, 1):
            raise ValueError(f"AdaptiveAvgPool2d: the NumPy engine supports output_size=(1, 1) "
                             f"only, got {output_size!r}.")
        self.output_size = output_size

    def extra_repr(self):
        return f"output_size={self.output_size}"


class ReLU(_Stateless):
    _kernel = "relu"

    def __init__(self, inplace=False):  # `inplace` accepted for torch compatibility
        super().__init__()
        self.inplace = inplace


class LeakyReLU(_Stateless):
    _kernel = "leaky_relu"

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def _kwargs(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Stateless):
    _kernel = "sigmoid"


class Tanh(_Stateless):
    _kernel = "tanh"


class Flatten(Module):
    """``(N, C, H, W)`` -> ``(N, C*H*W)`` (torch's ``start_dim=1, end_dim=-1``)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        self._shape = x.shape
        end = self.end_dim % x.ndim
        return x.reshape(x.shape[:self.start_dim] + (-1,) + x.shape[end + 1:])

    def backward(self, dout):
        return dout.reshape(self._shape)


class Dropout(_Stateless):
    """Inverted dropout with probability `p`; identity in eval mode."""

    _kernel = "dropout"

    def __init__(self, p=0.5, inplace=False, seed=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}.")
        self.p, self.inplace = p, inplace
        self.rng = None if seed is None else np.random.default_rng(seed)

    def _kwargs(self):
        return {"p": self.p, "training": self.training, "rng": self.rng or default_rng()}

    def extra_repr(self):
        return f"p={self.p}"


class LocalResponseNorm(_Stateless):
    """torch's convention (alpha divided by `size`); AlexNet's n=5, k=2, alpha=1e-4,
    beta=0.75 is ``LocalResponseNorm(**F.alexnet_lrn_args())``."""

    _kernel = "local_response_norm"

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def _kwargs(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class BatchNorm2d(Module):
    """``(N, num_features, H, W)``; keys ``weight, bias, running_mean, running_var,
    num_batches_tracked`` like torch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.momentum, self.affine = momentum, affine
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.weight = self.bias = None
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x):
        if self.training:
            self.num_batches_tracked = self.num_batches_tracked + 1
        w = self.weight.data if self.affine else None
        b = self.bias.data if self.affine else None
        out, self._cache = F.batch_norm_forward(x, self.running_mean, self.running_var, w, b,
                                                self.training, self.momentum, self.eps)
        return out

    def backward(self, dout):
        dx, dw, db = F.batch_norm_backward(dout, self._cache)
        if self.affine:
            self.weight.accumulate(dw)
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class CrossEntropyLoss(Module):
    """``forward(logits (N, K), targets (N,))`` -> mean loss (0-d array); ``backward()``
    -> ``dlogits (N, K)``."""

    def forward(self, logits, targets):
        loss, self._cache = F.cross_entropy_forward(logits, targets)
        return loss

    def backward(self, dout=1.0):
        return F.cross_entropy_backward(dout, self._cache)
