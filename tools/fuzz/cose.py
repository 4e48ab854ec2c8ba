"""Fuzz the gateway's COSE layer and command envelopes: accepted or refused with a reason, never a crash.

    python -m tools.fuzz.cose --cases 100000 --seed 7

Two parts, ``--cases`` each:

- ``cose``: :mod:`gateway.commands.cose` decodes and verifies mutations of the standard
  examples (tests/gateway/vectors/cose: Sign1 EdDSA and ES256, Mac0 HS256 and
  HS256/64) and of signed commands, plus random bytes; one quarter are
  property-based (hypothesis builds tagged arrays of any CBOR items). An
  accepted message must carry exactly the signed parts of its original
  (protected header, payload, signature): a mutation of a signed part that
  still verifies would be a forgery.
- ``envelope``: :func:`gateway.commands.envelope.open_envelope` on mutated signed
  commands, and on mutated commands signed again (so the mutation reaches the
  command decoder past the signature).

Prints one line per part; exits 1 on any crash or hang.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from gateway.commands import cose
from gateway.commands.envelope import open_envelope
from gateway.commands.keys import KeyRing
from gateway.commands.parse import CommandRejected
from gateway.service.config import parse_config
from tools.fuzz.cbor import T0
from tools.fuzz.commands import command_seeds
from tools.fuzz.harness import Summary, main_for, mutate, run_target
from tools.keys import key_entry, public_text

VECTORS = Path(__file__).resolve().parents[2] / "tests/gateway/vectors/cose"

_OPERATOR = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed: runs are reproducible


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


Verifier = Callable[[cose.CoseMessage], None]


def _sign1_verifier(key: cose.PublicKey) -> Verifier:
    return lambda msg: cose.verify_sign1(msg, key)


def _mac0_verifier(secret: bytes, alg: int) -> Verifier:
    return lambda msg: cose.verify_mac0(msg, secret, alg)


def vector_cases() -> list[tuple[bytes, Verifier]]:
    """Each standard example with the check that verifies it (its key and algorithm)."""
    out: list[tuple[bytes, Verifier]] = []
    for path in sorted(VECTORS.glob("*.json")):
        vec = json.loads(path.read_text())
        data = bytes.fromhex(vec["output"]["cbor"])
        if "sign0" in vec["input"]:
            key = vec["input"]["sign0"]["key"]
            pub: cose.PublicKey
            if key["kty"] == "OKP":
                pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["x_hex"]))
            else:
                x, y = (int.from_bytes(_b64(key[c]), "big") for c in ("x", "y"))
                pub = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            out.append((data, _sign1_verifier(pub)))
        else:
            secret = _b64(vec["input"]["mac0"]["recipients"][0]["key"]["k"])
            alg = cose.ALG_HS256_64 if vec["input"]["mac0"]["alg"] == "HS256/64" else cose.ALG_HS256
            out.append((data, _mac0_verifier(secret, alg)))
    for command in command_seeds():
        out.append((cose.sign1(command, _OPERATOR, b"fuzz"), _sign1_verifier(_OPERATOR.public_key())))
    return out


def check_message(originals: list[bytes], verify: Verifier) -> Callable[[bytes], str | None]:
    """Fuzz target: decode as the originals' type, verify with their key; a forgery raises.

    ``originals`` are every genuine message that ``verify`` accepts (a splice of
    two of them may rebuild one, which is no forgery).
    """
    first = cose.decode_sign1(originals[0]) if originals[0][0] == 0xD2 else cose.decode_mac0(originals[0])
    decode = cose.decode_sign1 if first.tag == cose.SIGN1_TAG else cose.decode_mac0
    genuine = set()
    for data in originals:
        msg = decode(data)
        genuine.add((msg.protected, msg.payload, msg.proof))

    def check(data: bytes) -> str | None:
        try:
            msg = decode(data)
            verify(msg)
        except cose.CoseError as exc:
            return exc.kind
        if (msg.protected, msg.payload, msg.proof) not in genuine:
            raise AssertionError(f"forgery accepted: {data.hex()}")
        return None

    return check


_ITEMS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.binary(max_size=70) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers(-3, 5) | st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=10,
)
_MESSAGES = st.builds(
    lambda tag, items: cbor2.dumps(cbor2.CBORTag(tag, items)),
    st.sampled_from([17, 18, 16, 96, 98]),
    st.lists(_ITEMS, min_size=0, max_size=5)
    | st.tuples(st.binary(max_size=8) | st.just(b"\xa1\x01\x27"), st.dictionaries(st.integers(-3, 5), _ITEMS,
                                                                                   max_size=2),
                st.binary(max_size=40), st.binary(min_size=60, max_size=66)).map(list),
)


def _same_key(cases: list[tuple[bytes, Verifier]], k: int) -> list[bytes]:
    """Case k's message first, then every other message its verifier accepts."""
    out = [cases[k][0]]
    for data, _ in cases:
        if data != cases[k][0]:
            try:
                msg = cose.decode_sign1(data) if data[0] == 0xD2 else cose.decode_mac0(data)
                cases[k][1](msg)
            except cose.CoseError:
                continue
            out.append(data)
    return out


def property_run(n: int, seed: int) -> Summary:
    """``n`` hypothesis-built tagged structures through decode + verify (Sign1 EdDSA key and Mac0)."""
    summary = Summary()
    cases = vector_cases()
    sign_check = check_message(_same_key(cases, len(cases) - 1), cases[-1][1])
    mac = next(i for i, c in enumerate(cases) if c[0][0] == 0xD1)
    mac_check = check_message(_same_key(cases, mac), cases[mac][1])

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_MESSAGES)
    def prop(data: bytes) -> None:
        summary.add(run_target(sign_check if data[:1] != b"\xd1" else mac_check, [data]))

    prop()
    return summary


def _cose_inputs(n: int, seed: int) -> Iterator[tuple[bytes, Callable[[bytes], str | None]]]:
    rnd = random.Random(seed)
    cases = vector_cases()
    checks = [check_message(_same_key(cases, k), verify) for k, (_, verify) in enumerate(cases)]
    pool = [data for data, _ in cases]
    for i in range(n):
        k = rnd.randrange(len(cases))
        data = rnd.randbytes(rnd.randrange(0, 40)) if i % 10 == 0 else mutate(rnd, pool[k], pool)
        yield data, checks[k]


def keyring() -> KeyRing:
    """A key ring trusting the fuzz operator key for every action on a small street."""
    toml = (
        'site = "s"\ngateway = "g"\n[[bus]]\nname = "bus0"\ndevice = "/dev/null"\n'
        '[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 1\n'
        '[commands]\nreplay_db = "r"\naudit_log = "a"\n'
        + key_entry("fuzz", public_text(_OPERATOR), ["*"], ["*"])
    )
    return KeyRing(parse_config(toml, source="fuzz.toml"))


def check_envelope_with(keys: KeyRing) -> Callable[[bytes], str | None]:
    """Fuzz target of open_envelope (the gateway's clock at the seeds' issue time)."""
    def check(data: bytes) -> str | None:
        try:
            open_envelope(data, keys, now=T0 + 1, skew=30, max_lifetime=3600)
        except CommandRejected as exc:
            return exc.reason
        return None

    return check


def _envelope_inputs(n: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    commands = command_seeds()
    signed = [cose.sign1(c, _OPERATOR, b"fuzz") for c in commands]
    for i in range(n):
        if i % 2:
            yield mutate(rnd, rnd.choice(signed), signed)
        else:  # mutate the command, then sign it: the mutation meets the command decoder
            yield cose.sign1(mutate(rnd, rnd.choice(commands), commands), _OPERATOR, b"fuzz")


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """Both parts, ``n`` cases each."""
    cose_summary = Summary()
    for data, check in _cose_inputs(n - n // 4, seed):
        cose_summary.add(run_target(check, [data]))
    cose_summary.add(property_run(n // 4, seed))
    envelope = run_target(check_envelope_with(keyring()), _envelope_inputs(n, seed))
    return {"cose (Sign1 EdDSA/ES256, Mac0)": cose_summary, "command envelope": envelope}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
