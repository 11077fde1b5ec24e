"""The edges: Redis, Kafka, HTTP and provider formats, each library translated once here."""
