"""Wire format of the IMC40 controller protocol (see hw/PROTOCOL.md): binary blocks, versions."""

from __future__ import annotations

import numpy as np

__all__ = ["PROTOCOL_VERSION", "BlockError", "encode_block", "parse_block", "block_header_length",
           "parse_idn", "check_version", "format_args", "decode_array"]

PROTOCOL_VERSION = "1.1"


class BlockError(ValueError):
    """A binary block that is malformed, short or has trailing garbage."""


def encode_block(payload: bytes) -> bytes:
    """``#<n><len><payload>`` (IEEE 488.2 definite length), without the line terminator."""
    n = str(len(payload))
    if len(n) > 9:
        raise BlockError("payload too large for a definite-length block")
    return b"#" + str(len(n)).encode() + n.encode() + payload


def block_header_length(head: bytes) -> tuple[int, int]:
    """From the first bytes of a block: (header length, payload length). ``head`` must hold at
    least the header; raises :class:`BlockError` on anything malformed."""
    if len(head) < 2:
        raise BlockError(f"short block header ({len(head)} bytes)")
    if head[:1] != b"#":
        raise BlockError(f"block must start with '#', got {head[:1]!r}")
    if not head[1:2].isdigit() or head[1:2] == b"0":
        raise BlockError(f"block length-of-length must be a digit 1-9, got {head[1:2]!r}")
    n = int(head[1:2])
    digits = head[2:2 + n]
    if len(digits) < n:
        raise BlockError(f"short block header: expected {n} length digits, got {len(digits)}")
    if not digits.isdigit():
        raise BlockError(f"block length must be decimal digits, got {digits!r}")
    return 2 + n, int(digits)


def parse_block(buf: bytes, terminated: bool = True) -> bytes:
    """The payload of a complete block in ``buf`` (optionally followed by exactly ``\\n``).

    Raises
    ------
    BlockError
        Malformed header, fewer payload bytes than announced, or anything after the block other
        than the single terminator.
    """
    header, length = block_header_length(buf[:11])
    end = header + length
    if len(buf) < end:
        raise BlockError(f"short block: {len(buf) - header} of {length} payload bytes")
    rest = buf[end:]
    if rest not in ((b"\n", b"") if terminated else (b"",)):
        raise BlockError(f"{len(rest)} unexpected byte(s) after the block")
    return buf[header:end]


def decode_array(payload: bytes, dtype, shape) -> np.ndarray:
    """Payload -> array of ``shape``; raises BlockError when the size does not match."""
    dt = np.dtype(dtype).newbyteorder("<")
    expected = int(np.prod(shape)) * dt.itemsize
    if len(payload) != expected:
        raise BlockError(f"block holds {len(payload)} bytes, expected {expected} for {shape} "
                         f"{dt.name}")
    return np.frombuffer(payload, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))


def parse_idn(reply: str) -> dict:
    """``vendor,model,serial,PROTO x.y`` -> dict; raises ValueError on another shape."""
    parts = [p.strip() for p in reply.strip().split(",")]
    if len(parts) != 4 or not parts[3].startswith("PROTO "):
        raise ValueError(f"unexpected *IDN? reply {reply!r}")
    return {"vendor": parts[0], "model": parts[1], "serial": parts[2],
            "protocol": parts[3][len("PROTO "):]}


def check_version(version: str) -> None:
    """Refuse an instrument that speaks another major protocol version."""
    major = version.split(".")[0]
    if major != PROTOCOL_VERSION.split(".")[0]:
        raise ValueError(f"instrument speaks protocol {version}; this driver speaks "
                         f"{PROTOCOL_VERSION}")


def format_args(*values) -> str:
    """Comma-separated arguments; floats with enough digits to round-trip."""
    out = []
    for v in values:
        if isinstance(v, float) or isinstance(v, np.floating):
            out.append(repr(float(v)))
        else:
            out.append(str(v))
    return ",".join(out)
