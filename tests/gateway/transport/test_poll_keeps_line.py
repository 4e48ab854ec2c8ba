"""A poll's requests keep the line against update chunks: checked on the bytes of the paced virtual bus.

The gateway's master (:class:`ModbusBus`) broadcasts update chunks (function 21 to unit
0, at the update's priority, with the spec's turnaround after each) without a break
while a poll of two requests reads a hosted firmware lamp, several times. The bus's
trace timestamps every frame: the two requests of a poll are told apart by their
answers (2 words, then 10), and no chunk may go between them. The chunk that
waits during the first request is barred from the line between the two requests
(``PriorityLock.keep``); a chunk that got it anyway would still give way while it
waits out t3.5 (``PriorityLock.give_way``) if the poll's next request is already
waiting. With neither, it goes between the requests every time (checked by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path

from gateway.contracts import HOLDING, INPUT
from gateway.contracts import update as records
from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import ModbusBus
from gateway.update.deliver import UPDATE_PRIORITY
from tools.sim.hosted_street import HostedStreet

BAUD = 115200
POLLS = 4
FIRST = 5 + 2 * 2  # bytes of the answer to the first request (2 words)
SECOND = 5 + 2 * 10  # ... and to the second (10 words)
CHUNK_FRAME = 12 + records.CHUNK  # a broadcast chunk: address, function, lengths, record reference, CRC


def test_no_update_chunk_goes_between_the_requests_of_a_poll(tmp_path: Path) -> None:
    trace_path = tmp_path / "trace.jsonl"
    street = HostedStreet(tmp_path / "street", nodes=1, baud=BAUD, paced=True, sample_ms=5000)
    street.bus_args = ["--trace", str(trace_path)]
    with street:
        street.start(timeout=120)
        bus = ModbusBus(BusConfig(name="bus0", device=street.master_device, baud=BAUD, parity="N", stopbits=2,
                                  timeout=1.0, retries=1))
        sent = asyncio.Event()

        async def send_chunks() -> None:
            for n in itertools.count():  # an update that always waits for the line
                await bus.file_record(0, records.FILE_IMAGE, n % 8, data=bytes(records.CHUNK),
                                      priority=UPDATE_PRIORITY)
                sent.set()

        async def main() -> None:
            update = asyncio.create_task(send_chunks())
            try:
                for _ in range(POLLS):
                    sent.clear()
                    await sent.wait()  # the poll starts while chunks go out
                    words = await bus.read_requests(1, [(HOLDING, 0, 2), (INPUT, 0, 10)])
                    assert [len(w) for w in words] == [2, 10]
            finally:
                update.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await update
                bus.close()

        asyncio.run(main())
    # The bus writes its trace once a second and at exit (the street stopped it).
    frames = [(who, n) for _, kind, who, n in (json.loads(line) for line in trace_path.read_text().splitlines())
              if kind == "out"]
    sizes = [n if who == "master" else -n for who, n in frames]  # answers negative
    firsts = [i for i, n in enumerate(sizes) if n == -FIRST]
    assert len(firsts) == POLLS and sizes.count(CHUNK_FRAME) >= POLLS, sizes
    for i in firsts:
        # After the first answer: the second request (8 bytes), its answer; no chunk in between.
        assert sizes[i + 1:i + 3] == [8, -SECOND], sizes[max(0, i - 2):i + 4]
