"""Outbound dialer daemon for FreeSWITCH, driven through Redis."""

__version__ = "0.1.0"
