"""Answering queries: an index opened with its weights, served to many clients, browsed."""
