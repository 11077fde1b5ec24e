"""Tests of processor.runtime."""
