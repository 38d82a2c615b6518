"""Renderers of a result document: terminal table, JSON, CSV."""
