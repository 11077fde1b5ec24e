"""Tests of processor.config."""
