"""Byte-level helpers for engine files (docs/engine-format.md): header fields and the XXH64
checksum, to craft files a test needs (e.g. a valid file of a newer major version)."""

from __future__ import annotations

import struct

MAGIC = b"KILNENG\0"
MAJOR_OFFSET = 8
CHECKSUM_OFFSET = 56

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_M = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M
    return (_rotl(acc, 31) * _P1) & _M


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * _P1 + _P4) & _M


def xxh64(data: bytes, seed: int = 0) -> int:
    """The published XXH64 algorithm (reference: xxhash.h's specification)."""
    n = len(data)
    i = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & _M
        v2 = (seed + _P2) & _M
        v3 = seed
        v4 = (seed - _P1) & _M
        while i + 32 <= n:
            a, b, c, d = struct.unpack_from("<4Q", data, i)
            v1, v2, v3, v4 = _round(v1, a), _round(v2, b), _round(v3, c), _round(v4, d)
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        (k,) = struct.unpack_from("<Q", data, i)
        h ^= _round(0, k)
        h = (_rotl(h, 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        (k,) = struct.unpack_from("<I", data, i)
        h ^= (k * _P1) & _M
        h = (_rotl(h, 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M
        h = (_rotl(h, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h


def engine_checksum(data: bytes) -> int:
    """The checksum field's value: XXH64 over everything but the field (bytes 56..63)."""
    seed = xxh64(data[:CHECKSUM_OFFSET], 0)
    return xxh64(data[CHECKSUM_OFFSET + 8:], seed)


def stored_checksum(data: bytes) -> int:
    return struct.unpack_from("<Q", data, CHECKSUM_OFFSET)[0]


def with_version(data: bytes, major: int, minor: int | None = None) -> bytes:
    """The engine with its header's version changed and the checksum recomputed: a file that is
    valid in every respect but its version."""
    out = bytearray(data)
    struct.pack_into("<H", out, MAJOR_OFFSET, major)
    if minor is not None:
        struct.pack_into("<H", out, MAJOR_OFFSET + 2, minor)
    struct.pack_into("<Q", out, CHECKSUM_OFFSET, engine_checksum(bytes(out)))
    return bytes(out)
