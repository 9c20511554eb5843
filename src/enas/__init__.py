"""enas: Efficient Neural Architecture Search via Parameter Sharing, in PyTorch.

The public API mirrors the command line:

>>> from enas import config, api
>>> cfg = config.load_config(preset="tiny")
>>> result = api.search(cfg, out="runs/demo")      # search + derive + final training
>>> api.train(cfg, arch, out="runs/retrain")         # train one fixed architecture

Extension points (see the README's "Use it as a library" and ``examples/``):

>>> enas.register_op("my_op", builder, parameter_free=False)   # builder(channels, reducible) -> module(x, stride)
>>> enas.register_space(my_space_module, my_model_builder)       # a search space of one's own

Layer 0 (``enas.spaces``, ``enas.config``) imports no torch, so architectures can be read, validated and
written without it.
"""

from .errors import EnasError  # noqa: F401 - layer 0: the base of every error enas raises for bad input
from .spaces import SpaceModule, register_space, unregister_space  # noqa: F401 - layer 0, no torch
from .spaces.base import register_op, unregister_op  # noqa: F401

__version__ = "0.1.0"
__all__ = ["EnasError", "register_op", "unregister_op", "register_space", "unregister_space", "SpaceModule", "__version__"]
