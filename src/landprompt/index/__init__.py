"""FAISS indexes over embedding cubes: build (streaming), search (with staleness checks), shards."""
