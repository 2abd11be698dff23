"""Training objectives beyond the supervised task losses in :mod:`tessera.train`."""

from tessera.losses.contrastive import MAX_LOGIT_SCALE, clip_loss, siglip_loss

__all__ = ["MAX_LOGIT_SCALE", "clip_loss", "siglip_loss"]
