"""Synchronous, connection-per-call access to channels (see :mod:`channels.sync.client`)."""
