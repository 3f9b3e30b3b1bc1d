"""``cnnlab serve``: a web explorer for the user's own checkpoints, in the browser.

    >>> from cnnlab.serve import create_app, load_explorers
    >>> app = create_app(load_explorers(["runs/lenet5-digits-..."]))   # a FastAPI app
    >>> serve(["runs/lenet5-digits-..."], port=8000)                    # blocks; Ctrl-C stops

The page (``/``) shows, for an uploaded, drawn or test image: the model's summary and
training curves, the input as the model sees it, top-k probabilities with the softmax written
out, every stage's activation maps and the classifier half (flatten, every fully connected
layer) as columns (CNN Explainer's overview, for any zoo model), Grad-CAM at a chosen layer
with its resolution said, and the detail of any unit of any column (convolution, pooling,
ReLU, batch norm, LRN, dropout, flatten, fully connected, a residual add, an inception
concatenation) computed by the NumPy engine beside torch's value, its receptive field drawn
back to the input and the units it feeds, the kernel sliding over the input, plus a
playground for the output-size formula, and two models side by side on one image
(:mod:`cnnlab.serve.compare`). The page uses only the
JSON API (``/openapi.json``, listed at ``/api``); its script, style and fonts ship in
``cnnlab/serve/static`` (nothing is fetched from elsewhere: it works offline).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading

from cnnlab.errors import UserError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a UserError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP, and without it every response waits ~40 ms for Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); "
                        f"choose another --port") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _preload_samples(explorers) -> None:
    """Load each checkpoint's test split in the background, so the page's first test image
    does not wait for a first decode (CIFAR-10's 10,000 PNGs: a minute); a dataset that is
    missing is reported by the samples route when asked, not here."""
    def load():
        for e in explorers.values():
            try:
                e.samples()
            except Exception:  # noqa: BLE001 - the route reports it to the page
                pass

    threading.Thread(target=load, name="cnnlab-preload", daemon=True).start()


class _Terminated(Exception):
    """SIGTERM, raised by our handler once uvicorn has shut down and re-sent it."""


def _on_sigterm(_sig, _frame):
    raise _Terminated


def serve(paths=(), runs=None, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = 10, open_browser: bool = False, replicas: int | None = None,
          threads: int = 1, log_level: str = "warning", out=sys.stdout,
          max_pixels: int | None = None, pretrained=(), compare: bool = False) -> None:
    """Serve the explorer until Ctrl-C or SIGTERM (both end it the same way: requests
    finished, "stopped" printed, exit status 0); prints the address first.

    ``pretrained``: (model name, weight set or None) pairs served with ImageNet weights
    (:mod:`cnnlab.pretrained`). ``max_pixels``: the largest upload in pixels (default
    :data:`cnnlab.serve.images.MAX_PIXELS`, 16 MP; see that module for why).

    ``compare``: open the page on its Compare tab (two models side by side on one image;
    needs at least two models served).

    ``replicas`` model copies per checkpoint serve requests in parallel (default: the CPU
    cores, at most 4), each running torch on ``threads`` threads: one image is too small a
    job to split across cores, and on a busy machine idle-spinning intra-op threads cost
    far more than they gain (LeNet-5: 2 ms per update with 1 thread, 50-600 ms with 2
    threads on a 2-core machine with other work running).
    """
    import os
    import signal

    import torch
    import uvicorn

    from cnnlab.serve.app import create_app, load_explorers
    from cnnlab.serve.images import MAX_PIXELS

    if max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb {max_upload_mb}: expected a positive size in MiB")
    if not _is_loopback(host):
        print(f"warning: --host {host} exposes the models and this explorer to other machines "
              f"on the network; there is no authentication", file=sys.stderr)
    if threads < 1:
        raise UserError(f"--threads {threads}: expected at least 1")
    torch.set_num_threads(threads)
    replicas = replicas or max(1, min(4, os.cpu_count() or 1))
    if replicas < 1:
        raise UserError(f"--replicas {replicas}: expected at least 1")
    explorers = load_explorers(paths, runs, replicas, pretrained=pretrained)
    if compare and len(explorers) < 2:
        raise UserError(f"--compare: serves {len(explorers)} model ({', '.join(explorers)}); "
                        f"name at least two checkpoints or run directories to compare")
    app = create_app(explorers, max_upload_mb, max_pixels or MAX_PIXELS)
    _preload_samples(explorers)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/" + ("#compare" if compare else "")
    for e in explorers.values():
        i = e.info()
        print(f"  {i['id']}: {i['model']} on {i['data']} ({len(i['classes'])} classes)", file=out)
    api = url.split("#")[0] + "api"
    print(f"cnnlab explorer at {url}  (API: {api}; Ctrl-C to stop)", file=out, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=3))
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    # uvicorn catches SIGINT and SIGTERM, shuts down, restores the handlers it found and
    # sends the signal again: SIGINT becomes a KeyboardInterrupt, and SIGTERM, with Python's
    # default handler, killed the process (status -15, no "stopped" line). Ours raises.
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, before)
        sock.close()
    print("cnnlab explorer stopped", file=out, flush=True)


__all__ = ["serve", "bind"]
