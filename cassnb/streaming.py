"""Streaming results page by page: ``from cassnb.streaming import StreamConfig``."""

from cassnb._core.stream import AsyncStreamingResultSet, StreamConfig

__all__ = ["AsyncStreamingResultSet", "StreamConfig"]
