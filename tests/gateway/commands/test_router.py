"""The command router against simulated lamps, without a broker: verification, execution, confirmation,
refusals (each leaving the lamps untouched), replay memory across restarts, the audit log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.audit import verify_log
from gateway.commands.parse import REASONS
from gateway.commands.router import CommandRouter
from gateway.contracts import INPUT, load_role
from gateway.service.stats import GatewayStats, NodeStats
from gateway.transport.modbus_rtu import ModbusBus
from tools.keys import key_entry, public_text
from tools.operator import Signer, build_command

NOW = 1_800_000_000.0
UNITS = {"lamp-1": 1, "lamp-2": 2, "lamp-3": 3}
GROUPS = {"all-three": ["lamp-1", "lamp-2", "lamp-3"], "pair": ["lamp-1", "lamp-2"]}
OPS = Signer(Ed25519PrivateKey.generate(), "ops")
MAINT = Signer(Ed25519PrivateKey.generate(), "maint")  # may dim and switch lamp-1 and lamp-2 only
STRANGER = Signer(Ed25519PrivateKey.generate(), "stranger")  # not in the configuration


def make_lamps(sim: Any, n: int) -> list[Any]:
    """n simulated lamps, units 1..n (input registers the simulator does not set read 0)."""
    spare = {r.name: 0 for r in load_role("lamp").registers if r.table == INPUT}
    out = []
    for unit in range(1, n + 1):
        lamp = sim.lamp(unit)
        lamp.values = {**spare, **lamp.values}
        out.append(lamp)
    return out


def keys_toml(state: Path, units: dict[str, int]) -> str:
    """[commands] with state files under ``state`` and the two trusted keys."""
    pair = [n for n in ("lamp-1", "lamp-2") if n in units]
    return (
        f'[commands]\nreplay_db = "{state / "replay.sqlite"}"\naudit_log = "{state / "audit.jsonl"}"\n'
        + key_entry("ops", public_text(OPS.key), ["*"], ["*"])
        + key_entry("maint", public_text(MAINT.key), ["dim", "switch"], pair)
    )


def cmd(cid: str, target: str, action: str = "dim", signer: Signer = OPS, now: float = NOW, **params: Any) -> bytes:
    if action == "dim" and not params:
        params = {"level": 40}
    return signer.sign(build_command(target, action, params, cid, now=now))


def run_router(
    pty_pair: tuple[str, str], sim: Any, lamps: list[Any], state: Path,
    body: Callable[[CommandRouter, list[bytes], GatewayStats], Awaitable[None]],
    units: dict[str, int] | None = None, audit: list[bytes] | None = None, **router_kw: Any,
) -> None:
    gw_end, node_end = pty_pair
    units = units or UNITS
    groups = {k: v for k, v in GROUPS.items() if all(m in units for m in v)}
    config = sim.config(gw_end, units=units, groups=groups, extra=keys_toml(state, units))
    stats = GatewayStats()
    for node in config.node:
        stats.nodes[node.id] = NodeStats(node.id, node.bus, node.unit, node.role)
    published: list[bytes] = []

    async def main() -> None:
        async with sim.serve(node_end, lamps):
            bus = ModbusBus(config.bus[0])
            router = CommandRouter(
                config, {"bus0": bus}, stats, published.append, clock=lambda: NOW + 0.5,
                publish_audit=None if audit is None else audit.append, **router_kw,
            )
            try:
                await body(router, published, stats)
            finally:
                router.close()
                bus.close()

    asyncio.run(main())


def test_single_node_dim_is_written_and_confirmed(pty_pair, sim, tmp_path) -> None:
    """One node: a signed command is written, read back, answered 'done' naming the node."""
    lamps = make_lamps(sim, 3)

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-1", "lamp-2", level=35))
        assert result is not None
        ms = result.pop("ms")
        assert set(ms) == {"verify", "durable", "bus", "readback", "record", "total"}
        assert all(v >= 0 for v in ms.values()) and ms["total"] >= max(ms["bus"], ms["readback"], ms["durable"])
        assert cbor2.loads(published[-1]) == {**result, "ms": ms}
        assert result == {
            "id": "c-1", "status": "done", "detail": "dim 35% confirmed on 1 node(s)",
            "confirmed": ["lamp-2"], "unconfirmed": [], "ts": NOW + 0.5,
        }
        assert stats.nodes["lamp-2"].values["dim_level"] == 35
        assert stats.commands["done"] == 1

    run_router(pty_pair, sim, lamps, tmp_path, body)
    assert [lamp.holding[0] for lamp in lamps] == [100, 35, 100]
    assert lamps[1].writes == [(0, [35])]


def test_group_covering_the_bus_is_broadcast_then_each_node_confirmed(pty_pair, sim, tmp_path) -> None:
    """A group that is every node of the bus goes out as one broadcast; the result lists who confirmed."""
    lamps = make_lamps(sim, 3)

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-2", "group:all-three", "switch", on=False))
        assert result is not None
        assert result["status"] == "done"
        assert "broadcast on bus0" in result["detail"]
        assert result["confirmed"] == ["lamp-1", "lamp-2", "lamp-3"]
        assert router.buses["bus0"].stats.broadcasts == 1  # type: ignore[attr-defined]

    run_router(pty_pair, sim, lamps, tmp_path, body)
    assert [lamp.holding[1] for lamp in lamps] == [0, 0, 0]


def test_partial_group_is_written_node_by_node(pty_pair, sim, tmp_path) -> None:
    """A group that leaves a node of the bus out is not broadcast."""
    lamps = make_lamps(sim, 3)

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-3", "group:pair", level=10))
        assert result is not None
        assert result["status"] == "done"
        assert router.buses["bus0"].stats.broadcasts == 0  # type: ignore[attr-defined]

    run_router(pty_pair, sim, lamps, tmp_path, body)
    assert [lamp.holding[0] for lamp in lamps] == [10, 10, 100]


def test_unconfirmed_nodes_make_the_command_fail(pty_pair, sim, tmp_path) -> None:
    """A node that does not answer is listed as unconfirmed; status 'failed'."""
    lamps = make_lamps(sim, 3)
    lamps[2].silent = True

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-4", "all", level=60))
        assert result is not None
        assert result["status"] == "failed"
        assert result["reason"] == "unconfirmed"
        assert result["confirmed"] == ["lamp-1", "lamp-2"]
        assert result["unconfirmed"] == ["lamp-3"]
        assert "lamp-3: read-back failed" in result["detail"]

    run_router(pty_pair, sim, lamps, tmp_path, body)
    assert [lamp.holding[0] for lamp in lamps[:2]] == [60, 60]


def refusal_payloads() -> dict[str, tuple[str | None, bytes]]:
    """One payload per refusal reason (except replayed and offline, which need history), with its id."""
    good = build_command("lamp-1", "dim", {"level": 5}, "r-sig", now=NOW)
    signed = bytearray(OPS.sign(good))
    signed[-1] ^= 0x01  # one bit of the signature
    return {
        "not_signed": ("r-plain", cbor2.dumps(build_command("lamp-1", "dim", {"level": 5}, "r-plain", now=NOW))),
        "bad_signature": ("r-sig", bytes(signed)),
        "unknown_key": ("r-key", cmd("r-key", "lamp-1", signer=STRANGER, level=5)),
        "out_of_scope": ("r-scope", cmd("r-scope", "lamp-3", signer=MAINT, level=5)),
        "expired": ("r-old", cmd("r-old", "lamp-1", now=NOW - 3600, level=5)),
        "issued_in_future": ("r-new", cmd("r-new", "lamp-1", now=NOW + 600, level=5)),
        "malformed": (None, b"\xd2\x84\x41"),
        "unknown_action": ("r-act", cmd("r-act", "lamp-1", "blink")),
        "bad_parameters": ("r-par", cmd("r-par", "lamp-1", level=101)),
        "unknown_target": ("r-tgt", cmd("r-tgt", "lamp-9", level=5)),
        "unknown_package": ("r-pkg", cmd("r-pkg", "lamp-1", "update", package="ab" * 32, canary=[],
                                         stop_on_failure=True)),
    }


def test_every_refusal_reason_is_distinct_and_changes_nothing(pty_pair, sim, tmp_path) -> None:
    """Each refusal gets its documented reason and the command's id; no lamp is written."""
    lamps = make_lamps(sim, 3)
    audit: list[bytes] = []

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        for reason, (cid, payload) in refusal_payloads().items():
            result = await router.handle(payload)
            assert result is not None
            assert (result["status"], result["reason"], result["id"]) == ("rejected", reason, cid), result
            assert result["confirmed"] == result["unconfirmed"] == []
        # out of scope by action: the maintenance key may not time-sync
        result = await router.handle(cmd("r-scope2", "lamp-1", "time_sync", signer=MAINT))
        assert result is not None and result["reason"] == "out_of_scope"
        assert "may not time_sync" in result["detail"]
        stats.nodes["lamp-3"].online = False
        result = await router.handle(cmd("r-off", "lamp-3", level=5))
        assert result is not None and (result["reason"], result["id"]) == ("offline_target", "r-off")
        # replayed: another command reusing an executed id
        assert (await router.handle(cmd("r-once", "lamp-2", level=100)))["status"] == "done"  # type: ignore[index]
        result = await router.handle(cmd("r-once", "lamp-1", level=1))
        assert result is not None and (result["reason"], result["id"]) == ("replayed", "r-once")

    run_router(pty_pair, sim, lamps, tmp_path, body, audit=audit)
    assert lamps[0].writes == [] and lamps[2].writes == []
    assert lamps[1].writes == [(0, [100])]  # the one accepted command, 100 % as before
    reasons = [e["reason"] for e in map(cbor2.loads, audit) if e["event"] == "refused"]
    assert set(reasons) == set(REASONS)


def test_retry_is_answered_from_memory_also_after_a_restart(pty_pair, sim, tmp_path) -> None:
    """The same envelope again, even after the router restarted: its first result, not executed twice."""
    lamps = make_lamps(sim, 1)
    envelope = cmd("d-1", "lamp-1", level=30)
    first: list[dict[str, Any]] = []

    async def once(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(envelope)
        assert result is not None and result["status"] == "done"
        del result["ms"]  # where this run's time went; a retry did not run
        first.append(result)
        lamps[0].holding[0] = 77  # someone else changed it since
        assert await router.handle(envelope) == result

    async def after_restart(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        assert await router.handle(envelope) == first[0]
        assert cbor2.loads(published[-1]) == first[0]
        again = await router.handle(cmd("d-1", "lamp-1", level=31))
        assert again is not None and again["reason"] == "replayed"

    run_router(pty_pair, sim, lamps, tmp_path, once, units={"lamp-1": 1})
    run_router(pty_pair, sim, lamps, tmp_path, after_restart, units={"lamp-1": 1})
    assert lamps[0].holding[0] == 77
    assert lamps[0].writes == [(0, [30])]


def test_audit_log_records_every_step_and_verifies(pty_pair, sim, tmp_path) -> None:
    """Refused, accepted, executed and duplicate entries, chained; the same entries go upstream."""
    lamps = make_lamps(sim, 1)
    audit: list[bytes] = []
    envelope = cmd("a-1", "lamp-1", level=20)

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        await router.handle(b"garbage")
        await router.handle(envelope)
        await router.handle(envelope)

    run_router(pty_pair, sim, lamps, tmp_path, body, units={"lamp-1": 1}, audit=audit)
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["refused", "accepted", "executed", "duplicate"]
    assert lines[1]["params"] == {"level": 20} and lines[1]["key"] == "ops"
    assert lines[2]["status"] == "done"
    assert [cbor2.loads(p) for p in audit] == lines
    verdict = verify_log(tmp_path / "audit.jsonl")
    assert verdict.ok and verdict.entries == 4


def test_rebirth_calls_the_uplink_hook_and_is_refused_without_it(pty_pair, sim, tmp_path) -> None:
    """rebirth asks the uplink to republish births for the targeted nodes; no hook, no rebirth."""
    lamps = make_lamps(sim, 3)
    asked: list[list[str]] = []

    async def hook(ids: list[str]) -> None:
        asked.append(ids)

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("b-1", "group:pair", "rebirth"))
        assert result is not None and result["status"] == "done"
        assert result["confirmed"] == ["lamp-1", "lamp-2"]
        router.rebirth = None
        result = await router.handle(cmd("b-2", "all", "rebirth"))
        assert result is not None and result["reason"] == "unknown_action"

    run_router(pty_pair, sim, lamps, tmp_path, body, rebirth=hook)
    assert asked == [["lamp-1", "lamp-2"]]
    assert all(lamp.writes == [] for lamp in lamps)


def test_submitted_commands_run_concurrently_and_all_answer(pty_pair, sim, tmp_path) -> None:
    """Commands submitted together through run() each get exactly one result."""
    lamps = make_lamps(sim, 3)

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        task = asyncio.create_task(router.run())
        for i, node in enumerate(UNITS):
            router.submit(cmd(f"s-{i}", node, level=20 + i))
        router.submit(b"garbage")
        deadline = asyncio.get_running_loop().time() + 30
        while len(published) < 4:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        results = sorted((cbor2.loads(p) for p in published), key=lambda r: str(r["id"]))
        assert [(r["id"], r["status"]) for r in results] == [
            (None, "rejected"), ("s-0", "done"), ("s-1", "done"), ("s-2", "done")
        ]

    run_router(pty_pair, sim, lamps, tmp_path, body)
    assert [lamp.holding[0] for lamp in lamps] == [20, 21, 22]
