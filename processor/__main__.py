"""`python -m processor` runs the `sendguard` command."""

from processor.cli import main

main()
