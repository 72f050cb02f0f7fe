"""Results as pandas DataFrames, and DataFrames written back to tables.

:mod:`~cassnb._frames.types` is the type table, :mod:`~cassnb._frames.read` and
:mod:`~cassnb._frames.write` the two directions, :mod:`~cassnb._frames.columnar` the
compiled decoder of pages still in wire form.
"""
