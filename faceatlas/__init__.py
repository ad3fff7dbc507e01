"""FaceAtlas: a self-hosted face and person perception platform."""

__version__ = "0.1.0"
