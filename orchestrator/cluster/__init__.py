"""The same runners on a Ray cluster (`mltag analyze --cluster auto|ray://HOST:PORT|HOST:PORT|local`).

Ray places work and moves data; it never runs model code. On each node a thin host actor (in the
driver env: Ray, msgpack, mltag) starts OUR runner subprocess from THAT node's model venv and
speaks our protocol to it; the driver's supervisor applies its timeout / crash / restart / poison
rules unchanged through that host (transport.py). The driver alone writes the results store.

Layout: connect.py (the cluster, its nodes, env preparation per node), node.py (what runs on a
node: the host actor and the per-node env task), transport.py (the driver's handle on a hosted
runner), pool.py (one pool of hosts per model), analysis.py (the Analysis that uses them),
health.py (`mltag health --cluster`).

Ray is an optional extra: only this package imports it (an import-linter contract), and only
when --cluster is given.
"""

from __future__ import annotations

from types import ModuleType

from orchestrator.errors import ClusterError

INSTALL_FIX = "pip install 'mltag[ray]' (in a checkout: make setup EXTRAS=ray)"


def require_ray() -> ModuleType:
    """The `ray` module, or a ClusterError naming the install command."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--cluster needs Ray, which is not installed here ({exc})", INSTALL_FIX) from None
    module: ModuleType = ray  # untyped for mypy (an optional extra, see pyproject's overrides)
    return module
