"""Short programs to copy for your own consumers of scan data."""
