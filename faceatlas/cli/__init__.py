"""Command-line doors onto the FaceAtlas layers."""
