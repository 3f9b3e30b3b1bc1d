"""The model zoo: one file per family; importing this package registers the torch builders.

The NumPy twins add their engine from :mod:`cnnlab.scratch.models`; the registry loads both
(``cnnlab.registry.MODEL_MODULES``) on first lookup, so no model file imports the registry back.
"""

from cnnlab.models import lenet  # noqa: F401
from cnnlab.models import alexnet, baselines, googlenet, resnet, vgg  # noqa: F401
