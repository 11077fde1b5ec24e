"""Async use cases over ports only: detection, resume, replay, and the messages they publish."""
