"""Tests of processor.simulation."""
