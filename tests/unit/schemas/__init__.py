"""Tests of the schemas package (the topic contracts)."""
