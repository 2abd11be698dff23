"""Hostile request payloads, built without ever holding what they decode to."""

from __future__ import annotations

import struct
import zlib

PNG_MODES = {"RGBA": (8, 6, 4), "RGB": (8, 2, 3), "L": (8, 0, 1), "1": (1, 0, None)}  # bit depth, colour type, bytes/px


def png(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels (a 9400x9400 RGBA one is ~340 KB and decodes to 353 MB).

    Compressed once per block of rows: after a full flush deflate forgets what it saw, so every
    identical block compresses to the same bytes; the Adler-32 of ``n`` zero bytes is ``(n << 16) | 1``
    (modulo 65521), so nothing ever holds or scans the decoded size.
    """
    depth, color_type, per_pixel = PNG_MODES[mode]
    row = b"\0" * (1 + (width * per_pixel if per_pixel else (width + 7) // 8))  # filter byte + pixels
    rows_per_block = max(1, 4_000_000 // len(row))
    blocks, rest = divmod(height, rows_per_block)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the zlib header and checksum are added below
    block = deflate.compress(row * rows_per_block) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.compress(row * rest) + deflate.flush()
    checksum = ((len(row) * height) % 65521) << 16 | 1  # every byte is zero (filter bytes too)
    stream = b"\x78\xda" + block * blocks + tail + struct.pack(">I", checksum)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
