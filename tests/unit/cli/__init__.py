"""Tests of processor.cli: the commands run in-process with click's CliRunner."""
