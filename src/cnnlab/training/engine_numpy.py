"""The NumPy engine (``--engine numpy``): forward, backward and update run in
:mod:`cnnlab.scratch`; everything else is the shared loop's (:mod:`cnnlab.training.loop`):
the same config, data, normalisation, augmentation, shuffling, schedule, objective, run
directory and checkpoints. Checkpoints hold torch's keys, so a NumPy-trained LeNet-5 loads
into the torch model (and teaches a torch student) and vice versa.

The objective's gradient with respect to the logits comes from its closed form
(:meth:`cnnlab.training.objectives.Objective.numpy`); ``model.backward`` takes it from there.
Imports go one way: this module uses :mod:`cnnlab.scratch`, which never imports the trainer.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.errors import UserError
from cnnlab.registry import get_model, list_models, model_info
from cnnlab.scratch import nn, optim
from cnnlab.training import schedule
from cnnlab.training.objectives import Batch
from cnnlab.training.setup import Dist, streaming


class NumpyEngine:
    name = "numpy"
    sync_every = 1

    def __init__(self, cfg):
        if ":" in cfg.model:  # a user's module:Class
            raise UserError(f"--engine numpy: model {cfg.model} is a torch.nn.Module; it trains "
                            f"with engine='torch' (the NumPy engine runs the zoo's twins: "
                            f"{', '.join(list_models(engine='numpy'))})")
        if "numpy" not in model_info(cfg.model).engines:
            raise UserError(f"--engine numpy: model {cfg.model!r} has no NumPy twin; available: "
                            f"{', '.join(list_models(engine='numpy'))}")
        if cfg.freeze:
            raise UserError(f"--freeze {cfg.freeze}: freezing layers needs --engine torch")
        self.cfg, self.dist, self.device = cfg, Dist(), torch.device("cpu")
        self.threads, self.frozen = 1, set()
        # torch only augments small batches here; its thread pool spinning beside BLAS's
        # threads on the same cores made an MNIST epoch 1.8x slower (14.8 s vs 8.2 s, 2 cores)
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def build(self, mkw: dict, spec: dict, module=None) -> None:
        nn.manual_seed(self.cfg.seed)
        self.mkw = mkw
        self.model = get_model(self.cfg.model, engine="numpy", **mkw)
        _skip_first_input_grad(self.model)
        self.mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)

    def head_keys(self) -> set[str]:
        twin = get_model(self.cfg.model, **self.mkw)  # the torch twin names the head
        heads = twin.head_names() if hasattr(twin, "head_names") else []
        return {k for k in twin.state_dict() if any(k.startswith(h + ".") for h in heads)}

    def arrays(self) -> dict:
        return {k: np.array(v) for k, v in self.model.state_dict().items()}

    def load_weights(self, weights: dict, strict: bool = True) -> None:
        full = weights if strict else {**self.arrays(), **weights}
        self.model.load_state_dict(full)

    def make_optimizer(self, head: set[str]) -> None:
        groups = schedule.param_groups(self.cfg, self.model.named_parameters(), head)
        self.opt = schedule.build_optimizer(self.cfg, groups, optim)

    def set_frozen(self, names: set[str]) -> None:
        assert not names  # refused in __init__

    def put_data(self, data, val) -> None:
        if streaming(data.train) or streaming(data.test):
            raise UserError(f"--engine numpy: trains in memory only, but --data {self.cfg.data} "
                            f"is streamed from disk (--in-memory {self.cfg.in_memory}); pass "
                            f"--in-memory yes, or use --engine torch")
        self.splits = {"train": data.train, "val": val, "test": data.test}

    def epoch_batches(self, perm: torch.Tensor, start: int, steps: int):
        bs, tr = self.cfg.batch_size, self.splits["train"]
        perm = perm.numpy()
        for s in range(start, steps):
            idx = perm[s * bs:(s + 1) * bs]
            yield tr.images[idx], tr.labels[idx], len(idx)

    def train_mode(self) -> None:
        self.model.train()

    def step(self, xb, y, seed: int, lr: float, global_n: int, objective, augment):
        """One update; returns (hard-label loss sum, correct) as Python numbers. Every draw of
        the step comes from ``seed``: augmentation from a torch generator, dropout from the
        engine's generator, so a resumed run replays an uninterrupted one's draws."""
        nn.manual_seed(seed)
        x01 = augment(torch.from_numpy(xb).float().div_(255),
                      generator=torch.Generator().manual_seed(seed))
        x = ((x01.numpy() - self.mean) / self.std).astype(np.float32)
        schedule.set_lr(self.opt, lr)
        logits = self.model(x)
        total, parts, grad = objective.numpy(logits, Batch(x01, torch.from_numpy(y)))
        self.opt.zero_grad()
        self.model.backward(grad)
        self.opt.step()
        return parts["ce"] * len(y), int((logits.argmax(1) == y).sum())

    def predict(self, key: str, split) -> tuple[torch.Tensor, torch.Tensor]:
        was = self.model.training
        self.model.eval()
        imgs = split.images
        out = [self.model(((imgs[i:i + 1000].astype(np.float32) / 255 - self.mean) / self.std)
                          .astype(np.float32)) for i in range(0, len(imgs), 1000)]
        self.model.train(was)
        return torch.from_numpy(np.concatenate(out)), torch.from_numpy(split.labels)

    def train_state(self, step: int, loop: dict) -> dict:
        return {"optimizer": self.opt.state_dict(), "loop": dict(loop),
                "scheduler": {"step": step, "schedule": self.cfg.schedule},
                # every draw is derived from (seed, epoch) or (seed, step); stored all the same
                "rng": {"scratch": nn.default_rng().bit_generator.state}}

    def load_train_state(self, ts: dict) -> None:
        self.opt.load_state_dict(ts["optimizer"])

    def weights(self) -> dict:
        return self.model.state_dict()

    def describe_device(self) -> str:
        return "cpu (numpy)"

    def close(self) -> None:
        torch.set_num_threads(self._torch_threads)


def _skip_first_input_grad(model) -> None:
    # The images need no gradient: the first conv/linear layer skips its dx (col2im). Only
    # when it is the first layer to run (children run in registration order): a layer before
    # it, such as the MLP's Flatten, would be handed None by the backward pass.
    first = next((m for _, m in model.named_modules() if not list(m.children())), None)
    if hasattr(first, "needs_input_grad"):
        first.needs_input_grad = False
