"""Tango device server of nexus-writer-service.

``NexusWriterService`` hosts one :class:`~tango_devices.nexus_writer.NexusWriter`
device per acquisition session. This is the only package that imports ``tango``.
"""

__all__: list[str] = []
