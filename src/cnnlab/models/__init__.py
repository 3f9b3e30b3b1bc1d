"""The model zoo: one file per family; importing this package registers them all."""

from cnnlab.models import lenet  # noqa: F401
from cnnlab.models import alexnet, baselines, googlenet, resnet, vgg  # noqa: F401
from cnnlab.scratch import models as _scratch_models  # noqa: F401,E402
