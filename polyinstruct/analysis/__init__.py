"""polyinstruct.analysis: analyses over experiment results and run directories (docs/analysis.md).

- ``laws``: scaling laws (the study's log law and alternatives), least-squares fits, bootstrap
  intervals, leave-one-size-out error; ``scaling``: fits per language over an experiment's size axis.
- ``allocate``: split a data budget across languages from fitted laws (exact), as a mixture config.
- ``alignment``: layer-wise cross-lingual alignment of hidden states (cosine, retrieval, CKA).
- ``fertility``: tokenizer fertility per language.
"""
