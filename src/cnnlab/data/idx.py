"""IDX files, the format of MNIST and Fashion-MNIST, read and written without any library.

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"):
- a 4-byte magic number: two zero bytes, a type code, the number of dimensions ``d``;
- ``d`` sizes, each a big-endian uint32;
- the data, C order (last dimension fastest), big-endian.

Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
Files may be gzipped (detected by the gzip magic ``1f 8b``, not by the name). Every
structural problem (bad magic, unknown type, truncated header or data, trailing bytes)
raises :class:`~cnnlab.errors.UserError` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path | str) -> bytes:
    """The file's bytes, gunzipped if it starts with the gzip magic."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from e
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError
        raise UserError(f"{path}: truncated or corrupt gzip file ({e})") from e


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes -> array of the stored shape, in native byte order (a copy)."""
    if len(data) < 4:
        raise UserError(f"{name}: truncated IDX file ({len(data)} bytes; the header alone is "
                        f"at least 4)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise UserError(f"{name}: not an IDX file (bad magic number 0x{data[:4].hex()}; expected "
                        f"0000 then a type code in {[f'0x{c:02x}' for c in IDX_DTYPES]} and "
                        f"the number of dimensions)")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise UserError(f"{name}: truncated IDX header ({ndim} dimensions need {header} bytes, "
                        f"the file has {len(data)})")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have < need:
        raise UserError(f"{name}: truncated IDX file (shape {shape} of {dtype.name} needs "
                        f"{need} data bytes, found {have})")
    if have > need:
        raise UserError(f"{name}: {have - need} unexpected bytes after the IDX data of shape "
                        f"{shape} (corrupt file?)")
    arr = np.frombuffer(data, dtype, count=need // dtype.itemsize, offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))  # astype copies: writable


def read_idx(path: Path | str) -> np.ndarray:
    """Read an IDX file (gzipped or not) -> array; bad files raise UserError naming ``path``."""
    return parse_idx(read_bytes(path), str(path))


def write_idx(path: Path | str, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX (gzipped when ``compress``, default: ``path`` ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code "
                         f"(expected one of {sorted(str(d) for d in _CODES)})")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: expected 1 to 255 dimensions, got shape {array.shape}")
    payload = (bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
               + np.ascontiguousarray(array, IDX_DTYPES[code]).tobytes())
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def read_idx_pair(images_path: Path | str, labels_path: Path | str,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """An images file (N, H, W) uint8 and a labels file (N,) -> (uint8 (N, 1, H, W), int64 (N,)).

    Labels must lie in ``0 .. num_classes - 1``; counts must match.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise UserError(f"{images_path}: expected uint8 images of shape (N, H, W), got "
                        f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise UserError(f"{labels_path}: expected integer labels of shape (N,), got "
                        f"{labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in "
                        f"{images_path}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise UserError(f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} out "
                        f"of range 0..{num_classes - 1} ({len(bad)} bad labels)")
    return images[:, None], labels.astype(np.int64)
