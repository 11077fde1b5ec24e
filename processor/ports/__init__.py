"""The seams the use cases see (stores, publishers, records) and their in-memory twins."""
