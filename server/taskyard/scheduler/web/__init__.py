"""The status page and `/metrics`: a read-only HTTP adapter over the service
layer, served by the scheduler's own event loop (aiohttp)."""
