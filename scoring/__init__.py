"""Leadflow scoring."""
