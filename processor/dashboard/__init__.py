"""The live status page: a read-only aiohttp server over the health and control topics."""
