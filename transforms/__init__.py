"""Leadflow pipeline stages: one module per stage, each a composite PTransform."""
