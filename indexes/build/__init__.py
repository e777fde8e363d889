"""`retrieve build-index`: the plan of a build, training, commits in rounds, --watch."""
