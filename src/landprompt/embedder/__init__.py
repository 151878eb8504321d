"""Embedders: CLIP text and image towers, photo embeddings, satellite encoders and embedding cubes.

Submodules are imported explicitly (``from landprompt.embedder.clip import load_clip``) so that importing
this package stays cheap and does not pull in torch or open_clip.
"""
