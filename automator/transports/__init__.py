"""Transports deliver a rendered email. Each implements `Transport`."""

from automator.transports.base import Transport

__all__ = ["Transport"]
