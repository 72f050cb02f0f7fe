"""The asyncio session core: clusters, sessions, results, streams and errors.

Everything here runs on any asyncio loop. The driver is reached through
:mod:`cassnb._driver` only; nothing here imports pandas, IPython or the layers above.
"""
