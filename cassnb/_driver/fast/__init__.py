"""The fast path: code below the driver's public API."""
