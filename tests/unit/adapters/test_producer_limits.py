"""Producer limits (processor.adapters.kafka): explicit, the same for every producer, and roomy.

Every message sendguard publishes, the largest dead letter included, fits one request and one
batch, and a request the producer accepts is one the broker's default limit accepts.
"""

from __future__ import annotations

from processor.adapters.kafka import (
    PRODUCER_MAX_BATCH_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    producer_options,
)
from processor.config.settings import Settings
from processor.runtime.app import Wiring, create_app
from schemas.dead_letter import MAX_DEAD_LETTER_BYTES

KAFKA_DEFAULT_MESSAGE_MAX_BYTES = 1_048_588


def test_every_producer_gets_the_same_explicit_limits() -> None:
    """The aiokafka producers' options and Faust's producer settings agree."""
    settings = Settings()
    options = producer_options(settings, "me")
    app = create_app(settings, Wiring())
    assert (options["max_request_size"], options["max_batch_size"]) == (
        app.conf.producer_max_request_size,
        app.conf.producer_max_batch_size,
    )
    assert (options["acks"], options["enable_idempotence"], options["client_id"]) == (
        "all",
        True,
        "me",
    )


def test_the_largest_dead_letter_fits_a_batch_and_a_request_the_broker_takes() -> None:
    """A dead letter never goes out alone for its size, nor is it refused."""
    assert MAX_DEAD_LETTER_BYTES < PRODUCER_MAX_BATCH_BYTES < PRODUCER_MAX_REQUEST_BYTES
    assert PRODUCER_MAX_REQUEST_BYTES < KAFKA_DEFAULT_MESSAGE_MAX_BYTES
