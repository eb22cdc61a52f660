"""Shared utilities of every layer: atomic writes, content hashes, manifests, audio reading, corpus files.

Imports go one way: recipes -> ``tasks`` -> ``corpora`` / ``selection`` / ``lobes`` -> ``common``.
"""
