"""Tests of processor.adapters."""
