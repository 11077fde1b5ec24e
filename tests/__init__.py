"""Tests of sendguard."""
