"""Evaluation sets and their hygiene.

- ``overlap``: checks every evaluation prompt and reference answer against every training
  turn in every language and file (exact text after normalisation with traditional Chinese
  folded, n-gram containment, TF-IDF character similarity), so no evaluation item is also a
  training example (docs/experiments.md, "Evaluation data");
- ``crosslingual``: the opt-in step that also finds translations and paraphrases with a
  model's pooled hidden states (calibrated for the packaged Gemma-3-270m);
- ``decontaminate`` / ``commands``: ``polyinstruct data decontaminate`` (docs/data.md).
- ``study1``: loader for study 1's published test set (50 prompts x 8 languages) from a
  local folder, or from the authors' GitHub repository when online (docs/experiments.md).
"""
