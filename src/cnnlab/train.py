"""``cnnlab.train``: the public training function, also the home of older import paths.

``cnnlab.train`` *is* the function: ``help(cnnlab.train)`` shows its parameters and every
option, and ``cnnlab.train(model="resnet20", data="cifar10", epochs=5)`` trains. The code
lives in :mod:`cnnlab.training`; the names older code imports from here
(``from cnnlab.train import train, normalizer, split_output, ...``) stay reachable as
attributes of the function.

Why not a module: importing ``cnnlab.train`` binds whatever ``sys.modules["cnnlab.train"]``
holds to the package attribute ``cnnlab.train``, and ``help()`` on a module shows module
text. So this module, once run, leaves the function itself in ``sys.modules``.
"""

from __future__ import annotations

import functools
import sys

from cnnlab.errors import TrainingError, UserError  # noqa: F401 - re-exported
from cnnlab.training.checkpointing import load_resume, new_loop_state  # noqa: F401
from cnnlab.training.evaluation import (  # noqa: F401
    normalizer,
    predict_logits,
    predict_logits_stream,
    split_output,
    topk_accuracy,
)
from cnnlab.training.loop import train as _train
from cnnlab.training.schedule import lr_factor  # noqa: F401
from cnnlab.training.setup import (  # noqa: F401
    Dist,
    channel_stats,
    init_distributed,
    input_spec,
    model_kwargs_for,
    resolve_device,
    streaming,
)

_channel_stats = channel_stats  # older names
_streaming = streaming

_DOC = """Train a model; return the run's final summary (a dict, also saved as ``final.json``).

Args:
    cfg: a :class:`cnnlab.TrainConfig` (or None: every option at its default).
    resume: a run directory to continue from its last checkpoint, exactly (its config is
        reloaded; ``epochs=`` may extend it). A finished run is returned as it is, with
        ``already_finished`` in the summary, unless ``epochs`` is larger.
    **options: any field of :class:`cnnlab.TrainConfig`, overriding ``cfg`` (listed below).

Returns:
    dict, the same as the run directory's ``final.json``: ``test_accuracy``, ``test_top5``,
    ``test_loss``, ``val_accuracy``, ``checkpoint`` (the one chosen), ``epochs``,
    ``stopped_early``, ``seconds``, ``run_dir``, ``model``, ``data``, ``device``, ...

Raises:
    UserError (a ValueError): an option out of range, data or a model that cannot be used;
    nothing is written then. TrainingError: training could not go on (a non-finite loss);
    the last good checkpoint is kept.

Example::

    import cnnlab
    s = cnnlab.train(model="lenet5", data="digits", epochs=5, out="runs/demo")
    print(s["test_accuracy"])
    cnnlab.train(resume="runs/demo", epochs=10)      # five more epochs

Options (keyword arguments, the same as ``cnnlab train --help``):

"""


@functools.wraps(_train, assigned=("__annotations__",))
def train(cfg=None, resume=None, **options) -> dict:
    return _train(cfg, resume, **options)


train.__module__, train.__qualname__ = "cnnlab", "train"
train.__signature__ = _train.__signature__  # every option, from TrainConfig
train.__doc__ = _DOC + (_train.__doc__ or "").partition("Options:\n\n")[2]
train.__wrapped__ = _train
# Every name defined here stays importable: `from cnnlab.train import normalizer` reads it
# from the function object that `sys.modules["cnnlab.train"]` now holds.
for _name, _value in list(globals().items()):
    if not _name.startswith("__") and _name not in ("functools", "sys", "train"):
        setattr(train, _name, _value)
train.train = train
sys.modules[__name__] = train
