"""``cnnlab.train``: the public training function (the loop is :mod:`cnnlab.training.loop`).

Beside a registry name and a data spec it takes what Keras's ``fit(x, y)`` and Lightning's
``Trainer.fit(model, data)`` take: any ``torch.nn.Module`` (:mod:`cnnlab.training.usermodel`)
and in-memory uint8 arrays or a dataset object (:mod:`cnnlab.data.memory`). Its signature
and docstring list every option (the :class:`cnnlab.config.TrainConfig` fields, help texts
from :data:`cnnlab.config.HELP`, which ``cnnlab train --help`` reads too).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.errors import UserError


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None, *,
          classes=None, on_epoch=None, **options) -> dict:
    """Train a model; return the run's final summary (a dict, also saved as ``final.json``).

    Args:
        cfg: a :class:`cnnlab.TrainConfig` (or None: every option at its default).
        resume: a run directory to continue from its last checkpoint, exactly (its config is
            reloaded; ``epochs=`` may extend it). A finished run is returned as it is, with
            ``already_finished`` in the summary, unless ``epochs`` is larger. A run trained on
            arrays needs the same arrays again (``data=``; a fingerprint of them is checked),
            and one of a class that cannot be imported its instance again (``model=``).
        model: a registered name (``cnnlab.list_models()``), ``"package.module:Class"``, or
            a ``torch.nn.Module`` instance of your own, trained in place (it ends holding the
            chosen checkpoint's weights). Its class is recorded as ``module:Class`` and its
            constructor arguments as ``model_kwargs``: what ``model.get_config()`` returns if
            the class defines it, else none. ``load_model``, ``eval``, ``summary``, ``viz``
            and ``serve`` rebuild it as ``Class(**model_kwargs)``, so they need the class
            importable; for one that is not (defined inside a function), training says so
            and ``cnnlab.load_model(run, model=Class(...))`` loads the weights.
        data: a dataset name or path (a spec), a :class:`cnnlab.data.DataSplits`,
            ``(x_train, y_train)`` (``test_split``, default 0.2, held out for testing) or
            ``((x_train, y_train), (x_test, y_test))``: uint8 images (N, C, H, W) and integer
            labels (N,); or an object with ``train``/``test`` (or ``images``/``labels``)
            attributes. The run directory keeps no copy of arrays: ``cnnlab eval``/``viz``
            cannot reload them later unless you save them (training says so in one line).
        classes: class names for arrays' labels 0..K-1 (default ``"0"``, ``"1"``, ...).
        on_epoch: a callable given each epoch's metrics row (a dict: ``epoch``,
            ``train_loss``, ``train_acc``, ``val_*`` or, with ``val_split=0``, ``test_*``,
            ``lr``, ``seconds``) after it is logged.
        **options: any field of :class:`cnnlab.TrainConfig`, overriding ``cfg`` (listed below).

    Returns:
        A :class:`cnnlab.run.TrainResult`, a dict, the same as the run directory's
        ``final.json``: ``test_accuracy``, ``test_top5``, ``test_loss``, ``val_accuracy``,
        ``checkpoint`` (the one chosen), ``epochs``, ``stopped_early``, ``seconds``,
        ``run_dir``, ``model``, ``data``, ``device``, ...; ``.run`` is the run (its metrics
        table, ``curves()``).

    Raises:
        UserError: (a ValueError) an option out of range, data or a model that cannot be
            used; nothing is written then.
        TrainingError: training could not go on (a non-finite loss); the last good
            checkpoint is kept.

    Example::

        import cnnlab
        s = cnnlab.train(model="lenet5", data="digits", epochs=5, out="runs/demo")
        print(s["test_accuracy"])
        cnnlab.train(resume="runs/demo", epochs=10)      # five more epochs
        s = cnnlab.train(model=MyNet(), data=((x, y), (x_test, y_test)), epochs=5)
    """
    from cnnlab.data.memory import NAME, is_spec
    from cnnlab.training import loop, usermodel

    given = loop.Given(classes=classes, on_epoch=on_epoch)
    model, data = options.get("model"), options.get("data")
    if model is not None and not isinstance(model, str):
        import torch

        if not isinstance(model, torch.nn.Module):
            raise UserError(f"model: found {type(model).__name__}, expected a registered model "
                            f"name (see cnnlab.list_models()), 'package.module:Class' or a "
                            f"torch.nn.Module")
        given.module = model
        if resume is not None:
            options.pop("model")  # checked against the run's class by prepare
        else:
            if options.get("model_kwargs"):
                raise UserError(f"model_kwargs {options['model_kwargs']}: a model instance "
                                f"carries its own arguments (its get_config()); pass either")
            options["model"] = usermodel.class_path(model)
            options["model_kwargs"] = usermodel.module_config(model)
    if data is not None and not is_spec(data):
        given.data = data
        if resume is not None:
            options.pop("data")  # checked against the run's fingerprint by prepare
        else:
            options["data"] = NAME
    elif classes is not None:
        raise UserError(f"classes={classes!r}: only for in-memory data (data= arrays); a "
                        f"dataset spec names its own classes")
    from cnnlab.run import TrainResult  # a dict; Jupyter shows it and its metrics as tables

    return TrainResult(loop.train(cfg, resume, given, **options))


def _public_signature():
    """``train``'s signature and docstring list every option (the TrainConfig fields), so
    ``help(cnnlab.train)`` and editors show them."""
    import dataclasses
    import inspect

    from cnnlab.config import HELP

    P = inspect.Parameter
    params = [P("cfg", P.POSITIONAL_OR_KEYWORD, default=None),
              P("resume", P.POSITIONAL_OR_KEYWORD, default=None)]
    lines = []
    wider = {"model": "str | torch.nn.Module", "data": "str | DataSplits | tuple | object"}
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        params.append(P(f.name, P.KEYWORD_ONLY, default=default,
                        annotation=wider.get(f.name, f.type)))
        lines.append(f"    {f.name} = {default!r}: {HELP.get(f.name, '')}".replace("%%", "%"))
    params += [P("classes", P.KEYWORD_ONLY, default=None),
               P("on_epoch", P.KEYWORD_ONLY, default=None)]
    train.__signature__ = inspect.Signature(params, return_annotation="dict")
    train.__doc__ = (train.__doc__ or "") + "\n    Options:\n\n" + "\n".join(lines) + "\n"


_public_signature()
