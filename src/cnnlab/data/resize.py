"""Bringing a whole split to a model's input size (``--input-size HxW``, ``--resize``).

Every image goes through :func:`cnnlab.preprocess.fit_size`, the function ``cnnlab predict``
(checkpoint or ONNX), ``serve`` and the explorer apply to a user's image file, so a training
image saved as a PNG and given to ``predict`` reaches the model as the same uint8 array the
trainer saw. Held-in-memory splits are resized once, on load, as uint8; streamed splits
(:class:`~cnnlab.data.stream.StreamingImageData`) batch by batch, as they are decoded.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cnnlab.errors import UserError


def resize_images(images: np.ndarray, size, policy: str = "bilinear") -> np.ndarray:
    """uint8 (N, C, H, W) -> uint8 (N, C, h, w) with ``size`` = (h, w), by ``policy``
    ("bilinear": stretch; "pad": shrink to fit keeping the aspect ratio, centre on black).
    The same arrays are returned when they already have that size."""
    from PIL import Image

    from cnnlab.preprocess import fit_size

    h, w = (int(v) for v in size)
    if images.shape[2:] == (h, w):
        return images
    out = np.empty((len(images), images.shape[1], h, w), np.uint8)
    for i, a in enumerate(images):
        im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        b = np.asarray(fit_size(im, h, w, policy))
        out[i] = b[None] if b.ndim == 2 else b.transpose(2, 0, 1)
    return out


class ResizedStream:
    """A streamed split whose batches are resized as they are decoded: the surface the
    trainer and ``eval`` use (``labels``, ``classes``, ``shape``, ``len``, ``batches``,
    ``read``, ``subset``), the rest delegated to the wrapped split."""

    def __init__(self, split, size, policy: str):
        self.split, self.size, self.policy = split, tuple(int(v) for v in size), policy
        self.shape = (split.shape[0], *self.size)

    def __getattr__(self, name):  # labels, classes, files, root, ...
        if name == "split":
            raise AttributeError(name)
        return getattr(self.split, name)

    def __len__(self) -> int:
        return len(self.split)

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.shape))

    def subset(self, idx) -> ResizedStream:
        return ResizedStream(self.split.subset(idx), self.size, self.policy)

    def read(self, idx):
        x, y = self.split.read(idx)
        return resize_images(x, self.size, self.policy), y

    def batches(self, index_batches, workers: int = 2, pin_memory: bool = False):
        import torch

        for x, y in self.split.batches(index_batches, workers, pin_memory=False):
            x = torch.from_numpy(resize_images(x.numpy(), self.size, self.policy))
            yield (x.pin_memory() if pin_memory else x), y


def resize_split(split, size, policy: str = "bilinear"):
    """One split (in memory or streamed) at ``size`` (h, w) by ``policy``."""
    if tuple(split.shape[1:]) == tuple(size):
        return split
    if hasattr(split, "images"):
        return replace(split, images=resize_images(split.images, size, policy))
    return ResizedStream(split, size, policy)


def apply_input_size(data, val, input_size, policy: str = "bilinear"):
    """(data, val) with every split at ``input_size`` ("HxW", or None: unchanged); the
    change is noted in ``data.notes``."""
    if not input_size:
        return data, val
    from cnnlab.config import parse_input_size

    size = parse_input_size(input_size)
    c, h, w = data.train.shape
    if (h, w) == size:
        return data, val
    note = f"input size: {h}x{w} -> {size[0]}x{size[1]} ({policy}, --input-size)"
    data = replace(data, train=resize_split(data.train, size, policy),
                   test=resize_split(data.test, size, policy), notes=[*data.notes, note])
    return data, (resize_split(val, size, policy) if val is not None else None)


def read_as_trained(spec: dict) -> dict:
    """:func:`cnnlab.data.load_data` arguments that read photos and mixed-size folders at a
    checkpoint's input size by its resize policy, as training read them."""
    return {"size": tuple(spec["size"]), "resize": spec.get("resize", "bilinear")}


def fit_split_to_spec(split, meta: dict, source: str):
    """A test split brought to a checkpoint's input size by its resize policy, as ``predict``
    brings an image file (28x28 MNIST for a 32x32 digits model: resized). A UserError when
    the channels differ from the model's."""
    spec = meta["input"]
    want = (spec["channels"], *spec["size"])
    if split.shape[0] == want[0]:
        split = resize_split(split, spec["size"], spec.get("resize", "bilinear"))
    if tuple(split.shape) != want:
        raise UserError(f"--data {source}: images are {'x'.join(map(str, split.shape))}, the "
                        f"model expects {'x'.join(map(str, want))}")
    return split
