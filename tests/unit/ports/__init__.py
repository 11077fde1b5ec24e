"""Tests of processor.ports: the in-memory twins' own behaviour (the contract is integration)."""
