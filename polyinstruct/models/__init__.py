"""Model checkpoints: tiny local models for tests and registry-package models."""
