"""Byte-level helpers for engine files (docs/engine-format.md): header fields, the XXH64 checksum,
sections and tagged fields, to craft files a test needs (e.g. a valid file of a newer major
version, or a cuda engine carrying generated kernel modules)."""

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


# ---- whole-file surgery (sections and the tagged fields of docs/engine-format.md) ---------------

HEADER_SIZE = 72
WEIGHTS_ALIGNMENT = 64
SECTION_INFO, SECTION_LAYERS, SECTION_WEIGHTS, SECTION_KERNELS = 1, 4, 8, 9
WIRE_INT, WIRE_BYTES, WIRE_LIST = 1, 3, 7
ATTRIBUTE_KIND_STRING = 3


def sections(data: bytes) -> dict[int, bytes]:
    """Section id -> section bytes, in file order."""
    header_size, = struct.unpack_from("<I", data, 12)
    count, = struct.unpack_from("<I", data, 68)
    out = {}
    for i in range(count):
        section_id, _, offset, size = struct.unpack_from("<IIQQ", data, header_size + 24 * i)
        out[section_id] = data[offset:offset + size]
    return out


def assemble(producer: bytes, parts: dict[int, bytes], major: int = 1, minor: int = 1) -> bytes:
    """A complete engine file of `parts` (section id -> bytes, in that order), checksum included."""
    table_end = HEADER_SIZE + 24 * len(parts)
    offsets, cursor = [], table_end
    for section_id, body in parts.items():
        alignment = WEIGHTS_ALIGNMENT if section_id == SECTION_WEIGHTS else 8
        cursor = (cursor + alignment - 1) // alignment * alignment
        offsets.append(cursor)
        cursor += len(body)
    out = bytearray(cursor)
    out[0:8] = MAGIC
    struct.pack_into("<HHI", out, 8, major, minor, HEADER_SIZE)
    out[16:48] = producer[:32].ljust(32, b"\0")
    struct.pack_into("<QQII", out, 48, cursor, 0, 0, len(parts))
    for i, ((section_id, body), offset) in enumerate(zip(parts.items(), offsets)):
        struct.pack_into("<IIQQ", out, HEADER_SIZE + 24 * i, section_id, 0, offset, len(body))
        out[offset:offset + len(body)] = body
    struct.pack_into("<Q", out, CHECKSUM_OFFSET, engine_checksum(bytes(out)))
    return bytes(out)


def fields(message: bytes) -> list[tuple[int, int, bytes]]:
    """The (tag, wire, payload) fields of a message."""
    out, at = [], 0
    while at < len(message):
        tag, wire, length = struct.unpack_from("<HHI", message, at)
        out.append((tag, wire, message[at + 8:at + 8 + length]))
        at += 8 + length
    return out


def field(tag: int, wire: int, payload: bytes) -> bytes:
    return struct.pack("<HHI", tag, wire, len(payload)) + payload


def int_field(tag: int, value: int) -> bytes:
    return field(tag, WIRE_INT, struct.pack("<q", value))


def list_items(payload: bytes) -> list[bytes]:
    count, = struct.unpack_from("<I", payload, 0)
    items, at = [], 4
    for _ in range(count):
        length, = struct.unpack_from("<I", payload, at)
        items.append(payload[at + 4:at + 4 + length])
        at += 4 + length
    return items


def list_payload(items: list[bytes]) -> bytes:
    return struct.pack("<I", len(items)) + b"".join(struct.pack("<I", len(i)) + i for i in items)


def fake_cubin(size: int = 96) -> bytes:
    """The smallest image the engine verifier takes for a cubin: an ELF64 header for EM_CUDA with
    no sections (a GPU driver would refuse it)."""
    header = bytearray(64)
    header[0:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<H", header, 18, 190)
    struct.pack_into("<H", header, 52, 64)
    return bytes(header) + b"\xcc" * max(0, size - 64)


def with_kernel_modules(data: bytes, modules: list[dict], layer_kernels: dict[int, str],
                        sm_arch: int = 90) -> bytes:
    """The engine turned into a format 1.1 cuda engine for sm_`sm_arch` that carries `modules`
    (dicts with name, and optionally sm_arch, compiler, source, cubin) in a kernels section, with
    layer i naming module layer_kernels[i] in its "kiln_kernel" attribute. For tests of inspect and
    of the verifier: no GPU can run it."""
    parts = sections(data)
    info = [(t, w, p) for t, w, p in fields(parts[SECTION_INFO]) if t not in (2, 3)]
    parts[SECTION_INFO] = (b"".join(field(*f) for f in info) + field(2, WIRE_BYTES, b"cuda")
                           + int_field(3, sm_arch))
    (tag, wire, payload), = fields(parts[SECTION_LAYERS])
    layers = list_items(payload)
    for index, module_name in layer_kernels.items():
        layer_fields = []
        for t, w, p in fields(layers[index]):
            if t == 5:  # attributes
                attribute = (field(1, WIRE_BYTES, b"kiln_kernel")
                             + int_field(2, ATTRIBUTE_KIND_STRING)
                             + field(5, WIRE_BYTES, module_name.encode()))
                p = list_payload(list_items(p) + [attribute])
            layer_fields.append(field(t, w, p))
        layers[index] = b"".join(layer_fields)
    parts[SECTION_LAYERS] = field(tag, wire, list_payload(layers))
    encoded = []
    for module in modules:
        encoded.append(field(1, WIRE_BYTES, module["name"].encode())
                       + int_field(2, module.get("sm_arch", sm_arch))
                       + field(3, WIRE_BYTES, module.get("compiler", "nvrtc 13.0").encode())
                       + field(4, WIRE_BYTES, module.get("source", "").encode())
                       + field(5, WIRE_BYTES, module.get("cubin", fake_cubin())))
    weights = parts.pop(SECTION_WEIGHTS, b"")
    parts[SECTION_KERNELS] = field(1, WIRE_LIST, list_payload(encoded))
    parts[SECTION_WEIGHTS] = weights
    return assemble(data[16:48].rstrip(b"\0"), parts)
