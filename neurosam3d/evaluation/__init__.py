"""Interactive evaluation of promptable 3D segmentation models (see README "Evaluation and inference")."""
