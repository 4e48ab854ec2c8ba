"""A virtual street of mixed roles: lamps, a water meter and an environment node on one bus."""

from __future__ import annotations

from pathlib import Path

from pymodbus.client import ModbusSerialClient

from protocols.roles import load
from tools.cli import build_parser
from tools.sim.street import VirtualStreet

ROLES = {1: "lamp", 2: "meter", 3: "env"}


def test_one_bus_three_roles(tmp_path: Path) -> None:
    """Each node runs its own role's image and answers with its role id; the manifest says who is who."""
    street = VirtualStreet(tmp_path, nodes=3, roles={2: "meter", 3: "env"}, heapsize="128K")
    assert {u: n.role for u, n in street.nodes.items()} == ROLES
    with street:
        manifest = street.start()
        assert [(n["id"], n["role"]) for n in manifest["nodes"]] == [("lamp-1", "lamp"), ("meter-2", "meter"),
                                                                        ("env-3", "env")]
        assert set(street.image_manifests) == {"lamp", "meter", "env"}
        assert street.image_manifests["meter"]["role"] == "meter"
        client = ModbusSerialClient(street.master_device, baudrate=19200, timeout=1.0, retries=3)
        assert client.connect()
        try:
            for unit, role in ROLES.items():
                reg = load(role)["role"]
                rr = client.read_input_registers(reg.address, count=1, device_id=unit)
                assert not rr.isError(), (role, rr)
                assert rr.registers[0] == load(role).role_id
        finally:
            client.close()
        assert (street.node(2).flash / "world.json").exists()


def test_sim_command_takes_meters_and_env_nodes() -> None:
    """``streetedge sim --nodes 2 --meters 1 --env 1``: lamps first, then meters, then environment nodes."""
    args = build_parser().parse_args(["sim", "--nodes", "2", "--meters", "1", "--env", "1"])
    assert (args.nodes, args.meters, args.env) == (2, 1, 1)
