"""Leadflow pipelines."""
