"""Content-addressed storage of artifact file contents: a port and its adapters."""
