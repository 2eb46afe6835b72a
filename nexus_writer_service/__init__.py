"""Write NeXus HDF5 files from scan data streamed through Redis.

Subpackages: ``data`` (scan data in Redis), ``concurrency`` (thread+greenlet
primitives), ``subscribers`` (writers), ``io`` (NeXus layout and HDF5),
``simulation`` (simulated scans), ``cli`` (entry points).
"""

__version__ = "0.1.0"
