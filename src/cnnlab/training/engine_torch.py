"""The torch engine: forward, backward and update with torch; the loop is shared
(:mod:`cnnlab.training.loop`).

GPU-resident uint8 data (or batches streamed from disk by worker processes), batched
augmentation on the device, mixed precision, channels_last, DistributedDataParallel under
``torchrun`` (each process takes a contiguous shard of every global batch; gloo on CPU,
NCCL on GPU).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnlab import optim
from cnnlab.errors import UserError
from cnnlab.registry import get_model
from cnnlab.training import evaluation as E
from cnnlab.training import finetune, schedule, usermodel
from cnnlab.training.checkpointing import rng_state
from cnnlab.training.objectives import Batch
from cnnlab.training.setup import choose_threads, init_distributed, resolve_device, streaming

AMP = {"auto": "auto", "off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine:
    name = "torch"

    def __init__(self, cfg):
        self.cfg = cfg
        self.dist, device_name = init_distributed(cfg.device)
        self.device = resolve_device(device_name)
        if cfg.amp not in AMP:
            raise UserError(f"--amp {cfg.amp}: expected auto, bf16, fp16 or off")
        amp = AMP[cfg.amp]
        if amp == "auto":
            amp = torch.bfloat16 if self.device.type == "cuda" else None
        self.amp_dtype = amp
        self.memfmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # the running sums stay on the device; a GPU is synchronised every 50 steps only
        self.sync_every = 1 if self.device.type == "cpu" else 50
        self.frozen: set[str] = set()

    # ------------------------------------------------------------------ model and optimiser
    def build(self, mkw: dict, spec: dict, module: nn.Module | None = None) -> None:
        """The model: ``module`` (a user's instance, trained in place), else ``cfg.model``
        built from ``mkw`` (a zoo name, or a user's ``module:Class``)."""
        torch.manual_seed(self.cfg.seed)
        if module is None:
            module = (usermodel.build(self.cfg.model, mkw, "--model")
                      if usermodel.is_path(self.cfg.model) else get_model(self.cfg.model, **mkw))
        self.model = module.to(self.device).to(memory_format=self.memfmt)
        n_params = sum(p.numel() for p in self.model.parameters())
        self.threads = choose_threads(self.cfg.threads, n_params, self.dist.world)
        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        self.norm = E.normalizer(spec, self.device)
        self.net = self.model

    def head_keys(self) -> set[str]:
        heads = self.model.head_names() if hasattr(self.model, "head_names") else []
        return {k for k in self.model.state_dict() if any(k.startswith(h + ".") for h in heads)}

    def arrays(self) -> dict:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

    def load_weights(self, weights: dict, strict: bool = True) -> None:
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
        self.model.load_state_dict(sd, strict=strict)

    def make_optimizer(self, head: set[str]) -> None:
        groups = schedule.param_groups(self.cfg, self.model.named_parameters(), head)
        self.opt = schedule.build_optimizer(self.cfg, groups, optim)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)

    def set_frozen(self, names: set[str]) -> None:
        """Freeze ``names`` (unfreeze the rest); DDP is (re)built for the trainable set."""
        self.frozen = set(names)
        finetune.apply_freeze(self.model, self.frozen)
        self.net = self.model
        if torch.distributed.is_initialized():
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            self.net = torch.compile(self.net)

    # ---------------------------------------------------------------------------- data
    def put_data(self, data, val) -> None:
        """Keep in-memory splits on the device as uint8 (decoded once, indexed per step)."""
        self.splits = {}
        for key, split in (("train", data.train), ("val", val), ("test", data.test)):
            if split is not None and not streaming(split):
                self.splits[key] = (torch.from_numpy(split.images).to(self.device),
                                    torch.from_numpy(split.labels).to(self.device))
        self.train_split = data.train

    def epoch_batches(self, perm: torch.Tensor, start: int, steps: int):
        """(uint8 images, labels, global batch size) of this process for steps start.."""
        bs, d = self.cfg.batch_size, self.dist
        slices = [perm[s * bs:(s + 1) * bs] for s in range(start, steps)]
        if streaming(self.train_split):  # decoded ahead by worker processes, in order
            shards = [sl.tensor_split(d.world)[d.rank].numpy() for sl in slices]
            it = self.train_split.batches(shards, self.cfg.workers,
                                          pin_memory=self.device.type == "cuda")
            for sl, (xb, y) in zip(slices, it):
                yield (xb.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                       len(sl))
            return
        x, y = self.splits["train"]
        perm = perm.to(self.device)  # one copy; the steps slice it on the device
        for s in range(start, steps):
            sl = perm[s * bs:(s + 1) * bs]
            idx = sl.tensor_split(d.world)[d.rank]
            yield x[idx], y[idx], len(sl)

    # -------------------------------------------------------------------------- one step
    def train_mode(self) -> None:
        self.model.train()
        finetune.frozen_norm_eval(self.model)

    def step(self, xb, y, seed: int, lr: float, global_n: int, objective, augment):
        """One update on this process's shard; returns (loss sum, correct) as device scalars."""
        seed += self.dist.rank
        # dropout draws depend on (seed, step) only; seeding just the device's generator
        # (torch.manual_seed also queues a CUDA seeding: ~0.1 ms a step)
        (torch.cuda.manual_seed if self.device.type == "cuda" else
         torch.default_generator.manual_seed)(seed)
        gen = torch.Generator(self.device).manual_seed(seed)
        x01 = augment(xb.float().div_(255), generator=gen)
        x = self.norm(x01).contiguous(memory_format=self.memfmt)
        schedule.set_lr(self.opt, lr)
        batch = Batch(x01, y)
        amp = self.amp_dtype
        with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
            out = self.net(x)
            total, parts = objective(out, batch)
        self.opt.zero_grad(set_to_none=True)
        if self.dist.world > 1:
            # DDP averages gradients over processes; weighting each shard's mean loss by its
            # share makes that the mean over the global batch even when the last batch does
            # not split evenly: the same math as one process.
            total = total * (len(y) * self.dist.world / global_n)
        self.scaler.scale(total).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        logits = E.split_output(out)[0]
        return parts["ce"].float() * len(y), (logits.detach().argmax(1) == y).sum()

    # ----------------------------------------------------------------------- evaluation
    def predict(self, key: str, split) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) of a split ("val" or "test") in eval mode."""
        kw = dict(channels_last=self.cfg.channels_last, amp_dtype=self.amp_dtype)
        if key in self.splits:
            x, y = self.splits[key]
            return E.predict_logits(self.model, x, self.norm, **kw), y
        return E.predict_logits_stream(self.model, split, self.norm, self.device,
                                       workers=self.cfg.workers, **kw)

    # ------------------------------------------------------------------------- state
    def train_state(self, step: int, loop: dict) -> dict:
        return {"optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
                "scheduler": {"step": step, "schedule": self.cfg.schedule},
                "rng": rng_state(), "loop": dict(loop)}

    def load_train_state(self, ts: dict) -> None:
        self.opt.load_state_dict(ts["optimizer"])
        self.scaler.load_state_dict(ts["scaler"])

    def weights(self) -> dict:
        return self.model.state_dict()

    def describe_device(self) -> str:
        return str(self.device)

    def close(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
