"""Two "nodes" on this machine: ``torchrun --nnodes 2 --nproc_per_node 1`` with a c10d
rendezvous on 127.0.0.1 (two launchers, node ranks 0 and 1) trains the same weights as
``cnnlab train --nproc 2`` (one launcher, two processes) with the same seed, on a streamed
photo folder (each process decodes only its shard of every batch)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from cnnlab.data.samples import make_photo_folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_the_same_weights_as_two_processes(tmp_path):
    data = make_photo_folder(tmp_path / "photos", 16, 4, sizes=((320, 240), (240, 320)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CNNLAB_CACHE": str(tmp_path / "cache")}
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "8", "--augment", "none",
              "--threads", "1", "--device", "cpu", "--progress", "none", "--seed", "3",
              "--in-memory", "no", "--workers", "0", "--val-split", "0"]
    procs = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--nproc", "2", *common,
                            "--out", str(tmp_path / "procs")], env=env, capture_output=True,
                           text=True, timeout=600)
    assert procs.returncode == 0, procs.stderr[-2000:]
    port = _free_port()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
              "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_id", "cnnlab-test",
              "--rdzv_endpoint", f"127.0.0.1:{port}"]
    nodes = [subprocess.Popen([*launch, "--node_rank", str(r), "-m", "cnnlab", "train", *common,
                               "--out", str(tmp_path / "nodes")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    final = json.loads((tmp_path / "nodes" / "final.json").read_text())
    assert final["processes"] == 2
    a = load_file(str(tmp_path / "procs" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "nodes" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # same ranks, same shards, same all-reduce: the same weights
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)
