"""Tests of processor.adapters.mail."""
