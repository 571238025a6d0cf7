"""Leadflow infra."""
