"""``cnnlab.train``: the trainer's old home, kept so ``from cnnlab.train import train`` and
``cnnlab.train(...)`` both work. The code lives in :mod:`cnnlab.training`.

The module is callable (``cnnlab.train(model="resnet20", data="cifar10", epochs=5)``): once
imported, Python binds this module to the package attribute ``cnnlab.train``, so the module
itself must behave as the function.
"""

from __future__ import annotations

import sys
import types

from cnnlab.errors import TrainingError, UserError  # noqa: F401 - re-exported
from cnnlab.training.checkpointing import load_resume, new_loop_state  # noqa: F401
from cnnlab.training.evaluation import (  # noqa: F401
    normalizer,
    predict_logits,
    predict_logits_stream,
    split_output,
    topk_accuracy,
)
from cnnlab.training.loop import train
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


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = train.__signature__  # inspect.signature(cnnlab.train) lists the options
