"""Scale-out on Ray: the same pipelines, preprocessors, embedder and training loop, run as Ray tasks.

Nothing here imports Ray at module import time, so ``import tessera`` and the CLI stay fast
(and work) without it; :func:`tessera.scale.runner.require_ray` names the extra to install.
"""

from tessera.scale.runner import ray_session

__all__ = ["ray_session"]
