"""File I/O shared by every stage: atomic writes, file digests and deterministic NIfTI."""
