"""Shared test helpers: tiny models, fake servers, toy data."""
