"""Make PyPI's CUDA-only torchvision importable beside a CPU torch.

PyPI's torchvision 0.28 links libtorch_cuda; beside CPU torch its _C.so fails to load and
`import torchvision` dies registering fake kernels for `torchvision::nms`. Defining the two
op schemas first lets every pure-PyTorch part work (transforms, ops.misc, models); only the
compiled ops (nms, roi_align, io decoding) stay unavailable. The env builder activates this
through a .pth file (`import runners._tv_cpu_shim as s; s.install()`), so no installed file is
ever edited (uv hardlinks installed files into its cache).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

_LIB: Any = None
STATE = "not applied"


def _apply() -> str:
    global _LIB
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "absent"
    import torch

    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
        return "native"  # a torchvision built for this torch: nothing to do
    except (OSError, RuntimeError):
        pass
    try:
        torch.ops.torchvision.nms  # noqa: B018 - defined already by another copy
        return "shimmed"
    except (AttributeError, RuntimeError):
        pass
    # FRAGMENT, not DEF: a second definition of the namespace must not fail
    _LIB = torch.library.Library("torchvision", "FRAGMENT")
    _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return "shimmed"


class _Finder:
    """Runs _apply() just before torchvision is first imported (costs nothing otherwise)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        global STATE
        if name == "torchvision":
            sys.meta_path.remove(self)
            STATE = _apply()
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
