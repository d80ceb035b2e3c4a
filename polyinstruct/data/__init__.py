"""Data: the canonical conversation record, readers/writers, validation, catalogue,
mixtures, budget and cross-lingual recipes, chunking, cleaning and statistics."""
