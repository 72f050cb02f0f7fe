"""Compiled helpers; each module here is optional and has a pure-Python counterpart."""
