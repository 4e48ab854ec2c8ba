"""Opening a command envelope: authenticated (COSE_Sign1, EdDSA, a trusted key) and fresh.

The checks run in this order, and the first that fails names the refusal
(reason codes in :mod:`gateway.commands.parse`):

1. ``malformed``: too large, not CBOR, or a broken COSE_Sign1;
2. ``not_signed``: CBOR, but not a COSE_Sign1 (such as a bare command map);
3. ``unknown_key``: no kid, or a kid the configuration does not list;
4. ``bad_signature``: the signature does not verify with that key, or the
   protected algorithm is not EdDSA;
5. the command inside (:func:`gateway.commands.parse.parse_command`): ``malformed``,
   ``unknown_action``, ``bad_parameters``, ``unknown_target`` (syntax only);
6. ``expired`` (now past ``exp``, or ``exp - iat`` beyond the allowed lifetime),
   ``issued_in_future`` (``iat`` beyond now + the clock-skew allowance).

Scope, replay and the target's existence are decided by the router, which knows
the configuration and the ids seen. Refusals carry the command's id when the
payload shows one, signed or not, so an operator can match the answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.commands import cose
from gateway.commands.keys import KeyRing, TrustedKey
from gateway.commands.parse import (
    BAD_SIGNATURE,
    EXPIRED,
    ISSUED_IN_FUTURE,
    MALFORMED,
    MAX_PAYLOAD,
    NOT_SIGNED,
    UNKNOWN_KEY,
    Command,
    CommandRejected,
    parse_command,
    peek_id,
)
from gateway.commands.strict_cbor import CborError, loads_strict


@dataclass(frozen=True)
class Opened:
    """A verified, fresh command and the key that signed it; ``digest`` is SHA-256 of the envelope."""

    command: Command
    key: TrustedKey
    digest: bytes


def open_envelope(
    payload: bytes, keys: KeyRing, *, now: float, skew: float, max_lifetime: float
) -> Opened:
    """Verify and parse one envelope; raise CommandRejected with the first reason that applies."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandRejected(MALFORMED, f"payload of {len(payload)} bytes (limit {MAX_PAYLOAD})")
    try:
        msg = cose.decode_sign1(payload)
    except cose.CoseError as exc:
        cid = _peek_unsigned(payload)
        if exc.kind == cose.NOT_COSE:
            raise CommandRejected(
                NOT_SIGNED, f"commands must be COSE_Sign1 envelopes ({exc.detail})", command_id=cid
            ) from None
        if exc.kind == cose.BAD_ALGORITHM:
            raise CommandRejected(BAD_SIGNATURE, exc.detail, command_id=_peek_signed(payload)) from None
        raise CommandRejected(MALFORMED, f"envelope: {exc.detail}", command_id=cid) from None
    cid = _peek(msg.payload)
    if msg.kid is None:
        raise CommandRejected(UNKNOWN_KEY, "the envelope names no key (kid)", command_id=cid)
    key = keys.get(msg.kid)
    if key is None:
        shown = msg.kid[:64].decode("utf-8", "replace")
        raise CommandRejected(UNKNOWN_KEY, f"key {shown!r} is not trusted by this gateway", command_id=cid)
    try:
        cose.verify_sign1(msg, key.public)
    except cose.CoseError as exc:
        raise CommandRejected(BAD_SIGNATURE, f"{exc.detail} (key {key.id!r})", command_id=cid) from None
    command = parse_command(msg.payload)
    if now > command.exp:
        raise CommandRejected(
            EXPIRED, f"expired {now - command.exp:.0f} s ago (exp {command.exp:.0f})", command_id=command.id
        )
    if command.iat > now + skew:
        raise CommandRejected(
            ISSUED_IN_FUTURE,
            f"issued {command.iat - now:.0f} s in the future (allowance {skew:.0f} s)",
            command_id=command.id,
        )
    if command.exp - command.iat > max_lifetime:
        raise CommandRejected(
            EXPIRED,
            f"lifetime {command.exp - command.iat:.0f} s exceeds the limit of {max_lifetime:.0f} s",
            command_id=command.id,
        )
    return Opened(command, key, hashlib.sha256(payload).digest())


def _peek(command_bytes: bytes) -> str | None:
    try:
        return peek_id(loads_strict(command_bytes))
    except CborError:
        return None


def _peek_unsigned(payload: bytes) -> str | None:
    """The id of a bare (unsigned) command map, if that is what arrived."""
    return _peek(payload)


def _peek_signed(payload: bytes) -> str | None:
    """The id inside a Sign1 that was refused for its algorithm (the structure is otherwise sound)."""
    try:
        item = loads_strict(payload, top_tags=frozenset({cose.SIGN1_TAG}))
        inner = item.value[2]
    except (CborError, AttributeError, IndexError, KeyError, TypeError):
        return None
    return _peek(inner) if isinstance(inner, bytes) else None
