"""The asyncio session core: clusters, sessions, results, streams and errors.

Everything here works from any running asyncio loop. The driver is reached through
:mod:`cassnb._driver` only; nothing here imports pandas, IPython or the layers above,
but for ``stream.frames()`` and ``stream.to_dataframe()``, which load the frames layer
when first called.
"""
