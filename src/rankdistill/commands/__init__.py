"""One module per CLI verb; each exposes ``register(app)`` and calls the matching Python API function."""
