"""Whole tables read by token ranges (:mod:`~cassnb._scan.ranges`), and as Dask
DataFrames with one partition per range (:mod:`~cassnb._scan.dask`)."""
