"""Tests of processor.domain."""
