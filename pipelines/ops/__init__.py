"""Operator tools: dead-letter replay, run summaries."""
