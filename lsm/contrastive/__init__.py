"""Contrastive projection heads, losses, pairing and the zero-shot protocol."""

from lsm.contrastive.heads import ProjectionHead
from lsm.contrastive.losses import (
    LOSSES,
    Temperature,
    clip_loss,
    cwcl_loss,
    soft_clip_loss,
    supcon_loss,
)
from lsm.contrastive.metrics import prototype_classification, retrieval, retrieval_chance
from lsm.contrastive.zeroshot import (
    ModalityData,
    ZeroShotConfig,
    ZeroShotModel,
    evaluate,
    fit,
    zeroshot_protocol,
)

__all__ = ["ProjectionHead", "clip_loss", "soft_clip_loss", "cwcl_loss", "supcon_loss",
           "Temperature", "LOSSES", "retrieval", "retrieval_chance", "prototype_classification",
           "ModalityData", "ZeroShotConfig", "ZeroShotModel", "fit", "evaluate",
           "zeroshot_protocol"]
