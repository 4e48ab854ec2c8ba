"""Every error the gateway defines has one root, GatewayError, and the ones callers act on carry their data."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import gateway
from gateway.commands.parse import CommandRejected
from gateway.delivery.outbox import OutboxError
from gateway.errors import GatewayError
from gateway.service.config import ConfigError, load_config
from gateway.transport.bus import NodeError


def _public_errors() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
                    and not name.startswith("_")):
                found.append(obj)
    return found


def test_every_public_gateway_error_derives_from_gateway_error():
    errors = _public_errors()
    names = {e.__name__ for e in errors}
    # The walk found the errors of every part, not just a few.
    assert {"ConfigError", "OutboxError", "BusError", "NodeTimeout", "CborError", "CoseError",
            "CommandRejected", "PublishRefused", "CompactError", "PlanError"} <= names
    strays = [f"{e.__module__}.{e.__name__}" for e in errors if not issubclass(e, GatewayError)]
    assert strays == []


def test_one_except_clause_catches_a_config_problem(tmp_path):
    bad = tmp_path / "gateway.toml"
    bad.write_text("site = \n")
    try:
        load_config(bad)
    except GatewayError as exc:
        assert isinstance(exc, ConfigError)
        assert isinstance(exc, ValueError)  # bad input stays a ValueError for stdlib-minded callers
        assert str(bad) in str(exc)
    else:
        raise AssertionError("a broken file loaded")


def test_errors_carry_what_callers_act_on(tmp_path):
    assert NodeError("unit 3: exception 2", 2).code == 2
    rejected = CommandRejected("expired", "exp is in the past", command_id="c-1")
    assert (rejected.reason, rejected.detail, rejected.command_id) == ("expired", "exp is in the past", "c-1")
    assert OutboxError(tmp_path / "o.db", "not an outbox").path == tmp_path / "o.db"


def test_a_cbor_refusal_names_the_unexpected_tag():
    import cbor2

    from gateway.commands.strict_cbor import CborError, loads_strict

    for data, tag in ((cbor2.dumps(cbor2.CBORTag(98, [])), 98), (cbor2.dumps([cbor2.CBORTag(1000, 1)]), 1000),
                      (b"\x82\x01", None)):
        try:
            loads_strict(data)
        except CborError as exc:
            assert exc.tag == tag
        else:
            raise AssertionError(f"{data.hex()} decoded")


def test_a_broken_poll_record_keeps_its_payload():
    from gateway.delivery.senml_records import PollRecordError, decode_poll

    try:
        decode_poll(b"\x83\x01\x02\x03")
    except PollRecordError as exc:
        assert exc.payload == b"\x83\x01\x02\x03" and isinstance(exc, ValueError)
        assert "expected [bytes, int, list]" in str(exc)
    else:
        raise AssertionError("decoded")


def test_a_config_error_names_file_key_and_problem():
    from gateway.service.config import parse_config

    text = ('site = "s"\ngateway = "g"\n[[bus]]\nname = "b"\ndevice = "/dev/null"\n'
            '[[node]]\nid = "n1"\nbus = "b"\nunit = 300\n')
    try:
        parse_config(text, source="cabinet.toml")
    except ConfigError as exc:
        assert exc.source == "cabinet.toml"
        assert exc.key.startswith("node[0]") and "unit" in exc.key
        assert str(exc) == f"cabinet.toml: {exc.key}: {exc.problem}"
    else:
        raise AssertionError("unit 300 accepted")
