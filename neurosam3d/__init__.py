"""NeuroSAM3D."""
