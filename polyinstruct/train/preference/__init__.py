"""Preference tuning: the DPO family (DPO with sigmoid/IPO/hinge/robust losses), ORPO, SimPO and KTO.

The objective is its own axis (``objective`` in the training config), independent of ``method`` (full
fine-tuning or any adapter). ``losses`` holds the loss functions (equal to TRL's, tests/train/
test_preference_losses.py), ``data`` tokenizes preference records with the SFT masking rule, ``loop``
runs the optimisation steps inside the SFT loop's budget, checkpoint and resume machinery, and
``reference`` provides the reference model's log-probabilities. See docs/preference.md.
"""

from polyinstruct.train.preference.config import OBJECTIVES, PreferenceOptions

__all__ = ["OBJECTIVES", "PreferenceOptions"]
