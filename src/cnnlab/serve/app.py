"""The FastAPI application behind ``cnnlab serve``: a JSON API (``/openapi.json``, listed on
the ``/api`` page) and a page (``/``) that uses only that API.

Safe by default (the ``cnnlab serve`` command binds 127.0.0.1):
- only the checkpoints given at start-up are served, by id; no route takes a path;
- static files come from the package's ``static`` folder only (Starlette's ``StaticFiles``
  resolves each path and refuses anything outside it, encoded or not);
- request bodies larger than ``max_upload_mb`` are refused with 413 before they are parsed;
- a bad upload is a 400 with one line (:mod:`cnnlab.serve.images`); any other error a 500
  with the error's type only: no traceback ever reaches the client, and the server goes on.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from cnnlab.errors import UserError
from cnnlab.serve.explorer import Explorer, leaf_layers
from cnnlab.serve.images import DECODES, MAX_PIXELS, Decoder, encode_png

STATIC = Path(__file__).parent / "static"
MULTIPART_SLACK = 64 * 1024  # form boundaries and fields around the file
log = logging.getLogger("cnnlab.serve")


class BodyLimit:
    """ASGI middleware: a 413 for a request body over ``max_bytes``, from its Content-Length
    or, for a chunked body, as soon as the bytes read pass the limit (the multipart parser
    would otherwise spool any size to disk)."""

    def __init__(self, app, max_bytes: int, limit_shown: int):
        self.app, self.max_bytes, self.shown = app, max_bytes, limit_shown

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _send_413(send, self.shown)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, _too_large(self.shown))
            return msg

        await self.app(scope, limited, send)


def _too_large(max_bytes: int) -> str:
    return f"upload too large: the limit is {max_bytes / 2**20:.3g} MiB (--max-upload-mb)"


async def _send_413(send, max_bytes: int):
    body = json.dumps({"detail": _too_large(max_bytes)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def slug(name: str, taken: set) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    out, i = s, 2
    while out in taken:
        out, i = f"{s}-{i}", i + 1
    return out


def pretrained_explorer(ident: str, name: str, weights: str | None = None,
                        replicas: int = 2) -> Explorer:
    """Zoo model ``name`` with ImageNet weights (:func:`cnnlab.pretrained.load`: downloaded
    once to torch's cache, offline afterwards), served like a checkpoint."""
    import cnnlab.pretrained as pre

    model, _spec, _classes = pre.load(name, weights)
    return Explorer(ident, f"pretrained/{name}", replicas, loaded=(model, pre.meta(name, weights)))


def load_explorers(paths=(), runs: str | Path | None = None, replicas: int = 2,
                   warn=None, pretrained=()) -> dict[str, Explorer]:
    """The checkpoints to serve, by id: each of ``paths`` (checkpoint, .json sidecar or run
    directory) and every run directory under ``runs``. Loaded now: a bad one in ``paths``
    fails here; a folder under ``runs`` with no loadable checkpoint (a run interrupted
    before its first epoch, a lab's output folder) is skipped with one ``warn`` line
    (default: to stderr). ``replicas``: model copies per checkpoint serving in parallel."""
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    items = [(Path(p), False) for p in paths]
    out: dict[str, Explorer] = {}
    for name, weights in pretrained:  # ("resnet18", None): ImageNet weights, by model name
        ident = slug(f"{name}-{weights or 'pretrained'}", set(out))
        out[ident] = pretrained_explorer(ident, name, weights, replicas)
    if runs is not None:
        root = Path(runs)
        if not root.is_dir():
            raise UserError(f"--runs {root}: no such directory")
        items += [(d, True) for d in sorted(root.iterdir()) if d.is_dir()]
    if not items and not out:
        raise UserError("no checkpoints to serve: give checkpoints or run directories, "
                        "--runs DIR, or --model NAME --pretrained")
    for p, optional in items:
        name = p.name if p.is_dir() else (p.parent.parent.name if p.parent.name == "checkpoints"
                                          else p.parent.name if p.stem in ("best", "last")
                                          else p.stem)
        ident = slug(name, set(out))
        try:
            out[ident] = Explorer(ident, p, replicas)
        except UserError as e:
            if not optional:
                raise
            warn(f"warning: skipped {p}: {str(e).replace(str(p) + ': ', '')}")
    if not out:
        raise UserError(f"--runs {runs}: no run directory with a checkpoint inside")
    return out


def parse_offsets(offsets: str) -> dict[str, int]:
    """The form's ``offsets`` ({stage: first channel shown}) as ints; a UserError naming
    ``offsets`` for anything else (JSON's Infinity, 1e999 and NaN included)."""
    try:
        raw = json.loads(offsets)
        out = {str(k): int(v) for k, v in raw.items()}
        if any(isinstance(v, float) and not math.isfinite(v) for v in raw.values()):
            raise ValueError
    except (ValueError, AttributeError, TypeError, OverflowError):
        raise UserError(f"offsets {offsets[:80]!r}: expected a JSON object {{stage: channel "
                        f"offset}} of whole numbers") from None
    return out


def create_app(explorers: dict[str, Explorer], max_upload_mb: float = 10,
               max_pixels: int = MAX_PIXELS, decodes: int = DECODES) -> FastAPI:
    """The app serving ``explorers`` (see :func:`load_explorers`). Uploads: at most
    ``max_upload_mb`` MiB and ``max_pixels`` pixels, ``decodes`` decoded at a time
    (:mod:`cnnlab.serve.images`)."""
    max_bytes = int(max_upload_mb * 2**20)
    decode = Decoder(max_pixels, decodes)
    app = FastAPI(title="cnnlab explorer", version="1", docs_url=None, redoc_url=None,
                  description="Every layer of a cnnlab checkpoint for one image: prediction, "
                              "activation maps, Grad-CAM and unit detail.")
    app.add_middleware(BodyLimit, max_bytes=max_bytes + MULTIPART_SLACK, limit_shown=max_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UserError)
    async def _user_error(_req: Request, e: UserError):
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(_req: Request, e: Exception):
        log.exception("error in a request")  # the traceback stays in the server's log
        return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the "
                                       f"server's log"}, status_code=500)

    def get(mid: str) -> Explorer:
        if mid not in explorers:
            raise HTTPException(404, f"no model {mid!r}; served: {', '.join(explorers)}")
        return explorers[mid]

    def read_bytes(image: UploadFile) -> bytes:
        data = image.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, _too_large(max_bytes))
        return data

    def read_upload(ex: Explorer, image: UploadFile, notes: dict | None = None):
        return decode(read_bytes(image), ex.spec, name=_safe_name(image.filename), notes=notes)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api", include_in_schema=False)
    def api_page():
        return FileResponse(STATIC / "api.html")

    @app.get("/api/models", summary="The served checkpoints")
    def models() -> list[dict]:
        return [e.info() for e in explorers.values()]

    @app.get("/api/models/{mid}", summary="A checkpoint's summary table, stages and curves")
    def model(mid: str) -> dict:
        return get(mid).details()

    @app.get("/api/models/{mid}/samples", summary="How many test samples there are")
    def samples(mid: str) -> dict:
        test = get(mid).samples()
        return {"count": len(test), "classes": list(test.classes)}

    @app.get("/api/models/{mid}/samples/{index}", summary="One test sample as a PNG",
             response_class=Response,
             description="The label is in the X-Label (index) and X-Class headers.")
    def sample(mid: str, index: int):
        ex = get(mid)
        try:
            img, label = ex.sample(index)
        except IndexError as e:
            raise HTTPException(404, str(e)) from None
        return Response(encode_png(img), media_type="image/png",
                        headers={"X-Label": str(label), "X-Class": _ascii(ex.classes[label])})

    @app.post("/api/models/{mid}/explore", summary="One full explorer update for an image",
              description="Input as the model sees it, top-k and the softmax written out, "
                          "every stage's activation maps (float32 little-endian, base64; "
                          "a page of up to 16 channels from offsets[stage]), Grad-CAM.")
    def explore(mid: str, image: UploadFile = File(...), target: int | None = Form(None),
                offsets: str = Form("{}"), every_layer: bool = Form(False),
                cam_layer: str | None = Form(None)) -> dict:
        ex = get(mid)
        offs = parse_offsets(offsets)
        notes: dict = {}
        img = read_upload(ex, image, notes)
        layers = leaf_layers(ex.model) if every_layer else None
        return ex.explore(img, target, offs, layers, notes, cam_layer or None)

    @app.post("/api/models/{mid}/unit", summary="One unit computed by the NumPy engine")
    def unit(mid: str, image: UploadFile = File(...), layer: str = Form(...),
             channel: int = Form(...), y: int = Form(...), x: int = Form(...)) -> dict:
        ex = get(mid)
        return ex.unit(read_upload(ex, image), layer, channel, y, x)

    @app.get("/api/models/{mid}/field", summary="A unit's receptive field and what it feeds",
             description="Boxes [top, left, bottom, right] of the unit (y, x) of column "
                         "`layer` in every earlier column and the input; the box of units it "
                         "feeds in the next column.")
    def field(mid: str, layer: str, y: int, x: int) -> dict:
        return get(mid).field(layer, y, x)

    @app.post("/api/compare", summary="Two models side by side on one image",
              description="For models `a` and `b` (ids of /api/models): each one's input as it "
                          "sees the image, prediction (top-5, softmax), Grad-CAM of its "
                          "predicted class and its first convolution's filters (float32 "
                          "little-endian, base64). Unknown ids: 404 naming them.")
    def compare(a: str, b: str, image: UploadFile = File(...)) -> dict:
        from cnnlab.serve.compare import UnknownModel, compare as both

        data, name = read_bytes(image), _safe_name(image.filename)
        try:
            return both(explorers, a, b,
                        lambda spec, notes: decode(data, spec, name=name, notes=notes))
        except UnknownModel as e:
            raise HTTPException(404, str(e)) from None

    @app.get("/api/output-size", summary="The output size formula of a conv/pool layer")
    def output_size(size: int, kernel: int, padding: int = 0, stride: int = 1) -> dict:
        from cnnlab.scratch.functional import output_size as osize

        if size < 1 or kernel < 1:
            raise UserError(f"size {size}, kernel {kernel}: expected positive integers")
        try:
            out = osize(size, kernel, stride, padding)
        except ValueError as e:
            raise UserError(str(e)) from None
        span = size + 2 * padding - kernel
        return {"output": out, "fits": span % stride == 0, "span": span,
                "formula": f"({size} + 2*{padding} - {kernel}) / {stride} + 1 = "
                           f"{span / stride + 1:g}" + ("" if span % stride == 0 else
                                                       f" -> floor: {out}")}

    return app


def _safe_name(name: str | None) -> str:
    """An upload's file name for messages: its last part, printable, short."""
    base = re.split(r"[\\/]", name or "upload")[-1]
    return re.sub(r"[^\w.\- ]", "_", base)[:80] or "upload"


def _ascii(s: str) -> str:
    return s.encode("ascii", "backslashreplace").decode()
