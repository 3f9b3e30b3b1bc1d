"""Training, laid out as named pieces (both engines share all but forward/backward/update):

- :mod:`~cnnlab.training.api`: ``train()``, the public function (``cnnlab.train``): a zoo
  name or any ``nn.Module`` (:mod:`~cnnlab.training.usermodel`), a data spec or arrays
  (:mod:`cnnlab.data.memory`), made ready for the loop by :mod:`~cnnlab.training.given`;
- :mod:`~cnnlab.training.loop`: prepare, then per epoch train / evaluate / checkpoint / log,
  then test the chosen checkpoint once;
- :mod:`~cnnlab.training.setup`: device, processes, threads, data and validation split,
  input spec, model arguments;
- :mod:`~cnnlab.training.objectives`: the loss as a weighted sum of terms (cross-entropy with
  label smoothing, GoogLeNet's auxiliary heads, distillation);
- :mod:`~cnnlab.training.schedule`: parameter groups, optimiser, learning-rate schedule;
- :mod:`~cnnlab.training.engine_torch`, :mod:`~cnnlab.training.engine_numpy`: one step of
  forward, backward and update, evaluation, optimiser state;
- :mod:`~cnnlab.training.checkpointing`, :mod:`~cnnlab.training.log`: the loop's position,
  resume, progress, TensorBoard, Ctrl-C;
- :mod:`~cnnlab.training.finetune`, :mod:`~cnnlab.training.teacher`: ``--init``/``--freeze``
  and ``--teacher``.
"""

from cnnlab.training.api import train

__all__ = ["train"]
