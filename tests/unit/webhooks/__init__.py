"""Tests of processor.webhooks."""
