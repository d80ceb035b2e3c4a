"""Language-consistency preference data built from a model's own answers (docs/preference.md)."""
