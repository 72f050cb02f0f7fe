"""Results as pandas DataFrames, and DataFrames written back to tables.

:mod:`~cassnb._frames.types` is the type table, :mod:`~cassnb._frames.read` and
:mod:`~cassnb._frames.write` the two directions. Pages still in wire form are decoded by
:mod:`~cassnb._frames.columnar` with the compiled decoder (:mod:`~cassnb._frames.compiled`),
column by column as :mod:`~cassnb._frames.plans` says, into memory from
:mod:`~cassnb._frames.memory`; a read whose pages make one frame writes them end to end
(:mod:`~cassnb._frames.blocks`) and joins them without copies (:mod:`~cassnb._frames.join`).
"""
