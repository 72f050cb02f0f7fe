"""The only code that touches cassandra-driver internals."""
