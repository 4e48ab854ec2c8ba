"""protocols.modbus against pymodbus 3.16 (CRC, frames both ways) and a mutation fuzz; CPython only."""

import random
import time

from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu import register_message as rm

from protocols.errors import ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.master import (
    build_read,
    build_read_write_multiple,
    build_write_multiple,
    build_write_single,
    read_pdu,
    read_write_multiple_pdu,
    write_multiple_pdu,
)
from protocols.modbus.pdu import EX_ILLEGAL_ADDRESS
from protocols.modbus.slave import SlaveFramer, respond
from tools.fuzz import modbus as fuzz

_CLIENT = FramerRTU(DecodePDU(False))  # builds requests, decodes responses
_SERVER = FramerRTU(DecodePDU(True))  # decodes requests, builds responses
_READS = {3: rm.ReadHoldingRegistersRequest, 4: rm.ReadInputRegistersRequest}


def _swapped(crc: int) -> int:
    # pymodbus returns the CRC with its bytes swapped, ready for big-endian packing.
    return (crc & 0xFF) << 8 | crc >> 8


def test_crc_matches_pymodbus_on_random_inputs() -> None:
    rnd = random.Random(1)
    for _ in range(3000):
        data = rnd.randbytes(rnd.randrange(0, 300))
        assert _swapped(crc16(data)) == FramerRTU.compute_CRC(data), data.hex()


def test_builders_match_pymodbus_frames() -> None:
    rnd = random.Random(2)
    for _ in range(1000):
        unit = rnd.randrange(0, 248)
        address = rnd.randrange(0x10000)
        fc = rnd.choice((3, 4))
        count = rnd.randrange(1, 126)
        theirs = _CLIENT.buildFrame(_READS[fc](dev_id=unit, address=address, count=count))
        assert build_read(unit, fc, address, count) == theirs
        value = rnd.randrange(0x10000)
        theirs = _CLIENT.buildFrame(
            rm.WriteSingleRegisterRequest(dev_id=unit, address=address, registers=[value])
        )
        assert build_write_single(unit, address, value) == theirs
        values = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 124))]
        theirs = _CLIENT.buildFrame(
            rm.WriteMultipleRegistersRequest(dev_id=unit, address=address, registers=values)
        )
        assert build_write_multiple(unit, address, values) == theirs
        read_address = rnd.randrange(0x10000)
        theirs = _CLIENT.buildFrame(rm.ReadWriteMultipleRegistersRequest(
            dev_id=max(unit, 1), read_address=read_address, read_count=count, write_address=address,
            write_registers=values[:121]))
        assert build_read_write_multiple(max(unit, 1), read_address, count, address, values[:121]) == theirs


def test_spec_example_of_function_23_is_pymodbus_s_frame_and_answer() -> None:
    """The golden bytes of tests/protocols/test_modbus_read_write.py are pymodbus's too."""
    from test_modbus_read_write import SPEC_ANSWER, SPEC_REQUEST, SPEC_VALUES

    request = rm.ReadWriteMultipleRegistersRequest(
        dev_id=1, read_address=3, read_count=6, write_address=14, write_registers=[0xFF, 0xFF, 0xFF]
    )
    assert _CLIENT.buildFrame(request) == SPEC_REQUEST
    assert _SERVER.buildFrame(rm.ReadWriteMultipleRegistersResponse(dev_id=1, registers=SPEC_VALUES)) == SPEC_ANSWER


def test_pymodbus_server_decodes_our_requests() -> None:
    rnd = random.Random(3)
    for _ in range(500):
        unit = rnd.randrange(1, 248)
        address = rnd.randrange(0x10000)
        values = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 124))]
        _, pdu = _SERVER.handleFrame(build_write_multiple(unit, address, values), 0, 0)
        assert pdu is not None
        assert (pdu.dev_id, pdu.function_code, pdu.address) == (unit, 16, address)
        assert pdu.registers == values
        _, pdu = _SERVER.handleFrame(build_read(unit, 4, address, len(values)), 0, 0)
        assert pdu is not None
        assert (pdu.function_code, pdu.address, pdu.count) == (4, address, len(values))


class _Bank:
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.last: list[int] = []
        self.written: list[int] = []

    def read(self, function: int, address: int, count: int, values_out: list[int]) -> None:
        if address >= 0xFF00:
            raise ModbusException(function, EX_ILLEGAL_ADDRESS)
        self.last = [self.rnd.randrange(0x10000) for _ in range(count)]
        for i, v in enumerate(self.last):  # values_out is an array('H'): item by item
            values_out[i] = v

    def write(self, address: int, values: list[int], count: int) -> None:
        self.last = list(values[:count])
        self.written = self.last


def test_our_slave_serves_pymodbus_requests_and_pymodbus_reads_the_answers() -> None:
    rnd = random.Random(4)
    bank = _Bank(rnd)
    out = bytearray(256)
    for _ in range(1000):
        unit = rnd.randrange(1, 248)
        framer = SlaveFramer(unit)
        fc = rnd.choice((3, 4, 6, 16, 23))
        address = rnd.randrange(0x10000)
        if fc == 23:
            regs = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 122))]
            address = min(address, 0x10000 - len(regs))
            read_address = rnd.randrange(0x10000)
            count = rnd.randrange(1, min(125, 0x10000 - read_address) + 1)
            request = rm.ReadWriteMultipleRegistersRequest(
                dev_id=unit, read_address=read_address, read_count=count, write_address=address,
                write_registers=regs)
        elif fc in (3, 4):
            count = rnd.randrange(1, min(125, 0x10000 - address) + 1)
            request = _READS[fc](dev_id=unit, address=address, count=count)
        elif fc == 6:
            request = rm.WriteSingleRegisterRequest(
                dev_id=unit, address=address, registers=[rnd.randrange(0x10000)]
            )
        else:
            regs = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 124))]
            address = min(address, 0x10000 - len(regs))
            request = rm.WriteMultipleRegistersRequest(dev_id=unit, address=address, registers=regs)
        framer.feed(_CLIENT.buildFrame(request))
        req = framer.next_request()
        assert req is not None and req.function == fc and req.address == address
        n = respond(req, bank, out)
        _, answer = _CLIENT.handleFrame(bytes(out[:n]), 0, 0)
        assert answer is not None and answer.dev_id == unit
        if fc == 23:  # written, then read: the answer holds the words read after the write
            assert (req.read_address, req.read_count, req.values) == (read_address, count, regs)
            if read_address >= 0xFF00:
                assert isinstance(answer, ExceptionResponse)
                assert answer.exception_code == EX_ILLEGAL_ADDRESS and bank.written == regs
            else:
                assert answer.registers == bank.last and len(answer.registers) == count
        elif fc in (3, 4) and address >= 0xFF00:
            assert isinstance(answer, ExceptionResponse)
            assert answer.exception_code == EX_ILLEGAL_ADDRESS
        elif fc in (3, 4):
            assert answer.registers == bank.last
        elif fc == 6:
            assert answer.address == address and answer.registers == bank.last
        else:
            assert answer.address == address and answer.count == len(bank.last)


def test_fuzz_slave_framer_stays_in_step_and_never_answers_wrongly() -> None:
    t0 = time.perf_counter()
    stats = fuzz.fuzz_slave(20_000, seed=11)
    print(f"slave fuzz: {stats['transmissions']} transmissions in {time.perf_counter() - t0:.1f} s")
    assert stats["failures"] == []
    assert stats["transmissions"] == 20_000
    assert stats["intact"] > 3000 and stats["returned"] >= stats["intact"]


def test_tcp_pdus_are_what_pymodbus_decodes() -> None:
    """The PDUs Modbus TCP sends (no unit, no CRC) decode in pymodbus's server as the requests they mean."""
    rnd = random.Random(9)
    decoder = DecodePDU(True)
    for _ in range(300):
        address = rnd.randrange(0x10000 - 125)
        count = rnd.randrange(1, 126)
        function = rnd.choice((3, 4))
        request = decoder.decode(read_pdu(function, address, count))
        assert isinstance(request, _READS[function])
        assert (request.address, request.count) == (address, count)
        values = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 124))]
        request = decoder.decode(write_multiple_pdu(address, values))
        assert isinstance(request, rm.WriteMultipleRegistersRequest)
        assert (request.address, request.registers) == (address, values)
        rw = decoder.decode(read_write_multiple_pdu(count - 1, count, address, values[:121]))
        assert isinstance(rw, rm.ReadWriteMultipleRegistersRequest)
        assert (rw.read_address, rw.read_count) == (count - 1, count)
        assert (rw.write_address, rw.write_registers) == (address, values[:121])
