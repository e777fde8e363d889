"""The `retrieve` command line: thin click commands over retrieval/ and indexes/."""
