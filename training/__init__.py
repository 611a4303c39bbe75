"""recadmin's model code: pure PyTorch and numpy. Nothing here imports Django or TorchServe.

The serving path (handlers/, packaged into a .mar) imports `training.base`, `training.checkpoint`
and `training.models.*` only, so those modules must need nothing beyond torch, numpy and the
standard library at import time.
"""
