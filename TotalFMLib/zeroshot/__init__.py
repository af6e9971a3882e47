"""Stage 4: zero-shot scores and free-text search over a case's organ embeddings, and the text
embeddings they compare with."""
