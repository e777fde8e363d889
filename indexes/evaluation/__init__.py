"""`retrieve evaluate`: retrieval quality of an index against labels or ground-truth pairs."""
