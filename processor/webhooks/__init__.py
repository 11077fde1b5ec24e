"""The authenticated webhook receiver: provider posts in, normalized events out to Kafka.

`sendguard webhooks` runs it; docs/WEBHOOKS.md describes the credentials file and each provider.
"""

from __future__ import annotations

from processor.webhooks.batch import raw_topic_name
from processor.webhooks.credentials import Credentials, load_credentials, parse_credentials
from processor.webhooks.server import create_webhook_app, run_webhooks

__all__ = [
    "Credentials",
    "create_webhook_app",
    "load_credentials",
    "parse_credentials",
    "raw_topic_name",
    "run_webhooks",
]
