"""Vertical applications built on the engine, gallery and video layers."""
