"""A command's write and read-back in one transaction (function 23), against pymodbus's server on a pty pair.

pymodbus's server is the independent implementation of function 23 here; the firmware's own is tested
under ``tests/protocols`` and on the virtual street.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymodbus.constants import ExcCodes

from gateway.commands.node_plan import readback_map, word_map
from gateway.contracts import load_role
from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import ModbusBus

LAMP = load_role("lamp")
DIM = LAMP["dim_level"].address


def _spy(lamp: Any, refuse_23: bool = False) -> list[int]:
    """The function codes the simulated lamp executes (a 23 shows twice: pymodbus runs its write, then its read)."""
    seen: list[int] = []
    action = lamp.action

    async def spy(fc: int, *args: Any) -> ExcCodes | None:
        seen.append(fc)
        if refuse_23 and fc == 23:
            return ExcCodes.ILLEGAL_FUNCTION
        result: ExcCodes | None = await action(fc, *args)
        return result

    lamp.action = spy
    return seen


def _bus(device: str) -> ModbusBus:
    return ModbusBus(BusConfig(name="bus0", device=device, parity="N", timeout=0.3, retries=1))


def test_a_write_and_its_read_back_travel_in_one_transaction(pty_pair, sim) -> None:
    """The answer holds the state after the write: one request on the line, not two."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, dim_level=100)
    seen = _spy(lamp)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = _bus(gw_end)
            start, words = await bus.write_read(1, DIM, [55], readback_map(LAMP, ("dim_level",)))
            bus.close()
            assert (start, list(words)) == (DIM, [55])
            assert bus.stats.requests == 1 and bus.commands_to(1) == 1

    asyncio.run(main())
    assert lamp.holding[DIM] == 55 and seen == [23, 23]


def test_a_node_without_function_23_gets_two_transactions_from_then_on(pty_pair, sim) -> None:
    """Exception 01 means nothing was written: the write and the read go separately, and the node is remembered."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, dim_level=100)
    seen = _spy(lamp, refuse_23=True)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = _bus(gw_end)
            readback = readback_map(LAMP, ("dim_level",))
            assert list((await bus.write_read(1, DIM, [55], readback))[1]) == [55]
            assert seen == [23, 16, 3]
            assert list((await bus.write_read(1, DIM, [60], readback))[1]) == [60]
            bus.close()
            assert seen == [23, 16, 3, 16, 3]
            assert bus.commands_to(1) == 2  # one per command, the refused 23 included in its own

    asyncio.run(main())
    assert lamp.holding[DIM] == 60


def test_a_map_that_is_not_a_firmware_role_is_never_asked_function_23(pty_pair, sim) -> None:
    """A device profile's device may not know function 23 (nor refuse it): plain words go in two transactions."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, dim_level=100)
    seen = _spy(lamp)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = _bus(gw_end)
            assert list((await bus.write_read(1, DIM, [45], word_map(DIM, 1)))[1]) == [45]
            bus.close()

    asyncio.run(main())
    assert seen == [16, 3]
