"""The ``preference:`` block of a training config (used when ``objective`` is not ``sft``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OBJECTIVES = ("sft", "dpo", "orpo", "simpo", "kto")
REFERENCE_FREE = ("orpo", "simpo")


class PreferenceOptions(BaseModel):
    """Loss options; docs/preference.md gives each loss's equation and source.

    ``beta``: DPO/IPO/hinge/robust/KTO temperature (IPO's tau), ORPO's lambda (weight of the odds-ratio
    term), SimPO's reward scale. ``reference``: where the reference log-probabilities come from:
    ``auto`` = the base model with the adapter disabled (adapters) or a frozen copy (full
    fine-tuning); ``precompute`` = one pass before training, stored in the run directory (no
    reference model kept in memory).
    """

    model_config = ConfigDict(extra="forbid")
    loss: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"  # objective dpo only
    beta: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # sigmoid (cDPO), robust, simpo
    simpo_gamma: float = Field(0.5, ge=0)  # SimPO's target reward margin gamma
    reference: Literal["auto", "precompute"] = "auto"
    desirable_weight: float = Field(1.0, gt=0)  # KTO
    undesirable_weight: float = Field(1.0, gt=0)  # KTO
    kto_kl: Literal["batch", "none"] = "batch"  # KTO's reference point z0: mismatched pairs in the batch, or 0
