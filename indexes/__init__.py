"""The vector store: a FAISS index, an SQLite table of items and a manifest, written atomically."""
