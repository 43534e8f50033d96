"""What only the tests import: the servers their fixtures start (``servers``)."""
