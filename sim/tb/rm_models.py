"""Python reference models of the example RMs in sim/rtl/rm_bank.v."""

from __future__ import annotations


def rm_add_const(data: bytes, add: int = 1) -> bytes:
    """RM 0: add a constant to every byte (mod 256)."""
    return bytes((b + add) & 0xFF for b in data)


def rm_invert(data: bytes) -> bytes:
    """RM 1: bitwise invert every byte."""
    return bytes(b ^ 0xFF for b in data)


RMS = [rm_add_const, rm_invert]
