"""Data: task collections, preprocessing, the prepared cache, patch sampling, synthetic phantoms."""
