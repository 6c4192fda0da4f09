"""Small helpers shared across ccq: atomic files and strict JSON (`fs`), devices (`device`), config fields."""
