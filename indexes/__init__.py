"""Indexes of fc7 vectors and what is done with them, in five parts; the arrows point down
(each part uses ``store``, nothing here imports ``cli``):

- ``store``: the index folder (SQLite items, one FAISS file per generation, the manifest, a
  build's staging), FAISS on the CPU, the GPU and on disk, and how close is close in an index;
- ``build``: `retrieve build-index` (the plan in SQLite, training, commits in rounds, --watch);
- ``search``: answering queries (an index opened with its weights, the service that many
  clients share, browsing); the service also runs `duplicates` for the page;
- ``duplicates``: `retrieve duplicates` (finding the groups, reporting them, acting on them);
- ``evaluation``: `retrieve evaluate`.

``config`` holds the settings and defaults of build-index, query, duplicates and evaluate;
``extractor`` what a build and a searcher need from the model side.
"""
