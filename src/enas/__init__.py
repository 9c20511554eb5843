"""enas: Efficient Neural Architecture Search via Parameter Sharing, in PyTorch.

The public API mirrors the command line:

>>> from enas import config, api
>>> cfg = config.load_config(preset="tiny")
>>> result = api.search(cfg, out="runs/demo")      # search + derive + final training
>>> api.train(cfg, arch, out="runs/retrain")         # train one fixed architecture

Layer 0 (``enas.spaces``, ``enas.config``) imports no torch, so architectures can be read, validated and
written without it.
"""

__version__ = "0.1.0"
