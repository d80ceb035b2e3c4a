"""Evaluation sets and their hygiene.

- ``overlap``: checks evaluation prompts against training instructions (exact text after
  normalisation and n-gram overlap, character n-grams for Chinese/Japanese), so no
  evaluation prompt is also a training example (docs/experiments.md, "Evaluation data").
- ``study1``: loader for study 1's published test set (50 prompts x 8 languages) from a
  local folder, or from the authors' GitHub repository when online (docs/experiments.md).
"""
