"""gmcourse: the small, tested helper package behind the deep generative models course.

What a lecture teaches is written in the lecture; this package holds what a second notebook,
a widget, the grader or a benchmark needs. Modules are named by concept:

- ``gmcourse.config``: device, seeds, and the smoke/full mode switch
- ``gmcourse.toy``: 2D toy densities with samplers and, where known, exact log-densities
- ``gmcourse.data``: MNIST, Fashion-MNIST and CIFAR-10 loaders and transforms
- ``gmcourse.train``: one ``fit`` loop for every model that exposes ``loss(x)``
- ``gmcourse.metrics``: nats and bits per dimension
- ``gmcourse.plot``: figures that return ``(fig, ax)``
"""
from gmcourse.config import SMOKE, get_device, set_seed, smoke_or_full

__all__ = ["SMOKE", "get_device", "set_seed", "smoke_or_full"]
__version__ = "0.1.0"
