"""`cnnlab serve`: server time of one full explorer update, a loopback load test, the page's
first load in Chromium, and (optionally) the README screenshot.

    python benchmarks/bench_serve.py                       # all measurements, ~2 min
    python benchmarks/bench_serve.py --skip-measure --zoo             # every zoo model
    python benchmarks/bench_serve.py --skip-measure --screenshot docs/explorer.png [--mnist-run RUN]

1. **Server time** of one full update (``Explorer.explore``: preprocessing, prediction with
   the softmax detail, every stage's maps, Grad-CAM, JSON packing) for LeNet-5 on a 28x28
   input and ResNet-20 on 32x32, in process, median of ``--repeats`` after warm-up; beside it
   the bare forward pass of the same model on the same input (the reference, same run).
   The weights are freshly initialised (the time does not depend on their values); torch
   runs on ``--threads`` threads (1, as ``cnnlab serve`` does by default).
2. **Load test**: ``cnnlab serve`` in its own process on 127.0.0.1 (never another address);
   1, 8 and 32 clients (threads with keep-alive connections) post the same image to
   ``/api/models/ID/explore`` for ``--seconds`` each: requests/s, p50, p99, errors.
3. **First load** of the page in Chromium (a fresh browser context each time, so nothing is
   cached): DOMContentLoaded, load, and the first complete explorer render (prediction,
   maps and Grad-CAM of the first test image drawn), median of 5.
4. ``--zoo``: one update on every zoo model at its own input size (fresh weights, 10
   classes), and the unit detail of its first convolution (NumPy engine vs torch).
5. ``--screenshot PATH``: the page on a LeNet-5 trained on MNIST (``--mnist-run``, or trained
   here: 2 epochs, the README's recipe) with a unit of the second convolution opened.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def make_checkpoint(folder: Path, name: str, model_kwargs: dict, channels: int, size: int) -> Path:
    """A checkpoint of ``name`` with fresh (seeded) weights and a plain input spec."""
    import torch

    from cnnlab.checkpoint import save_checkpoint
    from cnnlab.registry import get_model

    torch.manual_seed(0)
    model = get_model(name, **model_kwargs)
    meta = {"model": name, "model_kwargs": model_kwargs, "classes": [str(i) for i in range(10)],
            "input": {"channels": channels, "size": [size, size], "mean": [0.45] * channels,
                      "std": [0.25] * channels}, "epoch": 0}
    return save_checkpoint(folder / f"{name}-{size}" / "checkpoints" / "best",
                           model.state_dict(), meta)


def test_image(channels: int, size: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if channels == 1 else a).save(buf, format="PNG")
    return buf.getvalue()


def ms(ts) -> float:
    return 1e3 * statistics.median(ts)


def server_time(path: Path, channels: int, size: int, repeats: int) -> dict:
    import torch

    from cnnlab.serve.explorer import Explorer
    from cnnlab.serve.images import decode_upload

    ex = Explorer("m", path, replicas=1)
    png = test_image(channels, size)

    def full():
        return ex.explore(decode_upload(png, ex.spec), None, {}, None, {})

    img = decode_upload(png, ex.spec)
    x = ex.tensor(img)
    first = ex.stages[0]  # a unit of the first conv, and one of every column (mean)
    shapes = {s["name"]: s["shape"] for s in full()["stages"]}
    units = [(n, *((0, 0, sh[0] // 2) if len(sh) == 1 else (0, sh[1] // 2, sh[2] // 2)))
             for n, sh in shapes.items()]
    times = {"full update": [], "forward (reference)": [], "unit, first conv": [],
             "unit, any column": []}
    for i in range(repeats + 5):
        t0 = time.perf_counter()
        out = full()
        t1 = time.perf_counter()
        with torch.no_grad():
            ex.model(x)
        t2 = time.perf_counter()
        ex.unit(img, first, *units[0][1:])
        t3 = time.perf_counter()
        ex.unit(img, *units[i % len(units)])
        t4 = time.perf_counter()
        if i >= 5:
            times["full update"].append(t1 - t0)
            times["forward (reference)"].append(t2 - t1)
            times["unit, first conv"].append(t3 - t2)
            times["unit, any column"].append(t4 - t3)
    r = {k: ms(v) for k, v in times.items()}
    r["full update, p90"] = 1e3 * float(np.percentile(times["full update"], 90))
    r["response KiB"] = len(json.dumps(out)) / 1024
    r["stages"] = len(out["stages"])
    return r


def compare_time(paths: dict, repeats: int) -> dict:
    """Server time of one Compare update (two models on one image: each decodes, predicts,
    runs Grad-CAM; the first conv's filters), beside the two models' full explore updates."""
    from cnnlab.serve.app import load_explorers
    from cnnlab.serve.compare import compare
    from cnnlab.serve.images import decode_upload

    exs = load_explorers(list(paths.values()), replicas=1)
    a, b = list(exs)
    png = test_image(3, 32)
    times = {"compare update": [], "explore A + explore B": []}
    for i in range(repeats + 5):
        t0 = time.perf_counter()
        out = compare(exs, a, b, lambda spec, notes: decode_upload(png, spec))
        t1 = time.perf_counter()
        for e in exs.values():
            e.explore(decode_upload(png, e.spec))
        t2 = time.perf_counter()
        if i >= 5:
            times["compare update"].append(t1 - t0)
            times["explore A + explore B"].append(t2 - t1)
    return {"models": f"{a} vs {b}", **{k: ms(v) for k, v in times.items()},
            "response KiB": len(json.dumps(out)) / 1024}


def start_server(paths) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", *map(str, paths), "--port", "0",
                          "--host", "127.0.0.1"], stdout=subprocess.PIPE, text=True)
    while True:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("cnnlab serve exited")
        if "explorer at" in line:
            url = line.split("explorer at ")[1].split()[0]
            return p, int(url.rstrip("/").rsplit(":", 1)[1])


def upload_memory(run: Path, n: int = 8) -> dict:
    """Peak rise of the server's RSS (sampled every 5 ms from /proc) while ``n`` clients post
    a 4000x3990 RGB PNG (just under the 16 MP default limit) at once."""
    from PIL import Image

    g = np.linspace(0, 255, 4000, dtype=np.float32)[None, :] * np.ones((3990, 1), np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.stack([g, g[:, ::-1], g], -1).astype(np.uint8)).save(buf, format="PNG")
    body, headers = multipart(buf.getvalue())
    server, port = start_server([run])
    mid = run.name

    def rss():
        with open(f"/proc/{server.pid}/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS"))

    def post(data, hd):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", f"/api/models/{mid}/explore", data, hd)
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.status

    try:
        small, shd = multipart(test_image(1, 28))
        warm = [threading.Thread(target=post, args=(small, shd)) for _ in range(4)]
        [t.start() for t in warm]
        [t.join() for t in warm]
        base, peak, stop = rss(), [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.005)

        st = threading.Thread(target=sample)
        st.start()
        statuses: list = []
        t0 = time.perf_counter()
        ts = [threading.Thread(target=lambda: statuses.append(post(body, headers)))
              for _ in range(n)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        wall = time.perf_counter() - t0
        stop.set()
        st.join()
        return {"uploads": n, "ok": statuses.count(200), "base MiB": base / 2**20,
                "peak rise MiB": (peak[0] - base) / 2**20,
                "held after MiB": (rss() - base) / 2**20, "wall s": wall}
    finally:
        server.terminate()
        server.wait(10)


def multipart(png: bytes) -> tuple[bytes, dict]:
    b = "cnnlabbench"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{b}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={b}"}


def load_test(port: int, model_id: str, png: bytes, clients: int, seconds: float) -> dict:
    body, headers = multipart(png)
    lat: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/api/models/{model_id}/explore", body, headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(lat), "errors": errors[0],
            "req/s": len(lat) / wall, "p50 ms": 1e3 * float(np.percentile(lat, 50)),
            "p99 ms": 1e3 * float(np.percentile(lat, 99))}


def first_load(port: int, n: int = 5) -> dict:
    from playwright.sync_api import sync_playwright

    out = {"DOMContentLoaded": [], "load": [], "first explorer render": []}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(n):
            ctx = b.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-input]", timeout=60_000)
            out["first explorer render"].append(time.perf_counter() - t0)
            nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
            nav = json.loads(nav)
            out["DOMContentLoaded"].append(nav["domContentLoadedEventEnd"] / 1e3)
            out["load"].append(nav["loadEventEnd"] / 1e3)
            ctx.close()
        b.close()
    return {k: ms(v) for k, v in out.items()}


def mnist_run(folder: Path) -> Path:
    from cnnlab.config import make_config
    from cnnlab import train

    data = ROOT.parent / "shared" / "datasets" / "mnist.tar.gz"
    out = folder / "lenet5-mnist"
    train(make_config(data=str(data), epochs=2, batch_size=128, lr=0.15, label_smoothing=0.1,
                      augment="none", out=str(out), progress="none"))
    return out


def screenshot(run: Path, path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    server, port = start_server([run])
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1360, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-input]")
            page.fill("#sample-index", "18")
            page.dispatch_event("#sample-index", "change")
            page.wait_for_selector("body[data-input='sample-18.png']")
            cell = page.locator(".col[data-stage='features.3'] .cell[data-channel='4'] canvas")
            box = cell.bounding_box()
            cell.click(position={"x": 0.45 * box["width"], "y": 0.45 * box["height"]})
            page.wait_for_selector("#unit-result")
            page.evaluate("document.querySelector('.conv-rows').style.maxHeight = '300px'")
            png = page.screenshot(full_page=True)
            b.close()
    finally:
        server.terminate()
        server.wait(10)
    im = Image.open(io.BytesIO(png)).convert("RGB")
    im.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {im.size[0]}x{im.size[1]})")


def zoo_check(folder: Path) -> list[dict]:
    """Every registered model (fresh weights, 10 classes, its own input size): one full
    update (its time), and the unit detail of the centre unit of its first convolution,
    which must agree with torch."""
    from cnnlab.registry import list_models, model_info
    from cnnlab.serve.explorer import Explorer
    from cnnlab.serve.images import decode_upload

    rows = []
    for name in list_models():
        c, h, _ = model_info(name).input_size
        kw = {"input_size": h} if name == "lenet5" else {}
        path = make_checkpoint(folder, name, {"num_classes": 10, "in_channels": c, **kw}, c, h)
        ex = Explorer(name, path, replicas=1)
        img = decode_upload(test_image(c, h), ex.spec)
        t0 = time.perf_counter()
        out = ex.explore(img)
        dt = time.perf_counter() - t0
        conv = next((n for n, m in ex.model.named_modules() if type(m).__name__ == "Conv2d"),
                    None)  # the first convolution, inside a block or not
        agree = None
        if conv is not None:
            k, hh, ww = ex.explore(img, layers=[conv])["stages"][0]["shape"]
            agree = ex.unit(img, conv, k // 2, hh // 2, ww // 2)["agree"]
        rows.append({"model": name, "input": f"{c}x{h}x{h}", "stages": len(out["stages"]),
                     "Grad-CAM layer": out["gradcam"].get("layer", "none (no spatial layer)"),
                     "update s": round(dt, 2), "JSON MiB": round(len(json.dumps(out)) / 2**20, 2),
                     "first conv": conv, "unit agrees": agree})
        print(rows[-1], flush=True)
        del ex
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v)
                                       for v in r.values()) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8, help="per load-test level (default 8)")
    ap.add_argument("--repeats", type=int, default=30, help="server-time samples (default 30)")
    ap.add_argument("--screenshot", type=Path, help="write the README screenshot here")
    ap.add_argument("--mnist-run", type=Path, help="MNIST LeNet-5 run for the screenshot")
    ap.add_argument("--skip-measure", action="store_true", help="only the screenshot")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the in-process server time (default 1, as "
                         "`cnnlab serve` runs)")
    ap.add_argument("--zoo", action="store_true",
                    help="also run one update on every zoo model (a few minutes)")
    ap.add_argument("--compare", action="store_true",
                    help="only the Compare view's server time (LeNet-5 beside ResNet-20)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.compare:
            pair = {"lenet5": make_checkpoint(tmp, "lenet5", {"input_size": 28}, 1, 28),
                    "resnet20": make_checkpoint(tmp, "resnet20", {}, 3, 32)}
            print("server time of one Compare update (ms, median):")
            print(table([compare_time(pair, args.repeats)]))
            return 0
        if not args.skip_measure:
            models = {"lenet5-28": (make_checkpoint(tmp, "lenet5", {"input_size": 28}, 1, 28), 1, 28),
                      "resnet20-32": (make_checkpoint(tmp, "resnet20", {}, 3, 32), 3, 32)}
            big = {"resnet18-224": (make_checkpoint(tmp, "resnet18", {"num_classes": 10}, 3, 224),
                                    3, 224)}
            rows = [{"model": k, **server_time(p, c, s, args.repeats)}
                    for k, (p, c, s) in models.items()]
            rows += [{"model": k, **server_time(p, c, s, max(5, args.repeats // 3))}
                     for k, (p, c, s) in big.items()]
            print("server time of one full explorer update (ms, median):")
            print(table(rows))
            server, port = start_server([p.parent.parent for p, _, _ in models.values()])
            try:
                loads = []
                for k, (_, c, s) in models.items():
                    for n in (1, 8, 32):
                        loads.append({"model": k, **load_test(port, k, test_image(c, s), n,
                                                              args.seconds)})
                        print(loads[-1], flush=True)
                print("\nloopback load test (POST explore, 127.0.0.1):")
                print(table(loads))
                print("\nfirst load of the page (ms, median of 5 fresh browser contexts):")
                print(table([first_load(port)]))
            finally:
                server.terminate()
                server.wait(10)
            print("\n8 concurrent near-limit uploads (15.96 MP RGB PNG), server RSS rise:")
            print(table([upload_memory(models["lenet5-28"][0].parent.parent) for _ in range(3)]))
        if args.zoo:
            print("\nevery zoo model:")
            print(table(zoo_check(tmp)))
        if args.screenshot:
            run = args.mnist_run or mnist_run(tmp)
            screenshot(run, args.screenshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
