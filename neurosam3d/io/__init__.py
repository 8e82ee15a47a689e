"""File I/O shared by every stage: atomic writes and deterministic NIfTI."""
