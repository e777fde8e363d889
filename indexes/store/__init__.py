"""The index folder: SQLite items, one FAISS file per generation, the manifest, a build's staging;
FAISS on the CPU, the GPU and on disk; how close is close in one index (closeness)."""
