"""Tests of processor.services."""
