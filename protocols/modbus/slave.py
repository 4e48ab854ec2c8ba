"""The slave (node) end of Modbus RTU: find our requests in the bus traffic, answer them.

On a multi-drop RS-485 bus every node hears everything: requests for other
units, and the responses of other slaves, which a slave cannot tell from
garbage by their first bytes. :class:`SlaveFramer` stays in step like this:

- the length of a candidate frame at the head of the buffer follows from its
  function code (and byte count); once that many bytes are there, the CRC
  decides;
- a valid request for our unit or for broadcast (0) is returned; a valid
  request for another unit, or a valid response of another slave, is consumed
  silently (both are also recognised by length and CRC);
- where a frame is due (at the start, after a frame, after a silence) the
  framer waits until any candidate is complete; while hunting it only waits for
  what could be a request for us, so that garbage cannot hold the buffer;
- anything else (CRC mismatch, a function code no master sends, a unit above
  247, a frame cut short by silence) loses ONE byte and the hunt starts again
  at the next byte, so a good frame hidden behind garbage is never skipped;
- ``reset()``, called by the adapter on a 3.5-character silence, marks a frame
  boundary: no frame can continue past it, so a partial frame before it is
  dropped (a complete one is still returned).

The framer has no clock. :func:`respond` runs a request against the node's
register bank and writes the response frame into a caller-owned buffer.

Statistics for the diagnostics registers: ``frames_ok`` (requests for us),
``frames_other`` (valid frames for others: requests to other units, responses
of other slaves), ``crc_errors`` (complete requests that started where a frame
was due and failed their CRC; candidates rejected while hunting are not counted
again), ``bytes_dropped``.
"""

from protocols.errors import ModbusException
from protocols.modbus.crc import crc_ok, put_crc
from protocols.modbus.pdu import (
    BROADCAST,
    EX_DEVICE_FAILURE,
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_FUNCTION,
    EX_ILLEGAL_VALUE,
    FC_READ_FILE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_READ_WRITE_MULTIPLE,
    FC_WRITE_FILE,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    FILE_REFERENCE,
    MAX_FRAME,
    MAX_READ_COUNT,
    MAX_RW_WRITE_COUNT,
    MAX_UNIT,
    MAX_WRITE_COUNT,
    Request,
)
from protocols.modbus.rtu import Receiver, request_length, response_length

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_NO_LIMIT = const(-1)
MAX_FILE_WORDS = const(120)  # words of one file record read or written: the largest that fits both frames
_ADDRESS_SPACE = const(0x10000)


class SlaveFramer(Receiver):
    """Incremental RTU request parser for the node with unit ``unit`` (1..247).

    ``feed()`` bytes as they arrive, call ``next_request()`` until it returns
    None, call ``reset()`` when the line has been silent for 3.5 characters.
    ``unit`` may be changed at any time (e.g. after a configuration write).
    """

    def __init__(self, unit, size=MAX_FRAME):
        if not 1 <= unit <= MAX_UNIT:
            raise ValueError("unit must be 1..247, got %r" % (unit,))
        Receiver.__init__(self, size)
        self.unit = unit
        self.frames_ok = 0
        self.frames_other = 0
        self.crc_errors = 0
        self._limit = _NO_LIMIT  # frame boundary (silence) inside the buffer
        self._ready = 0  # length of a frame for us found at head, not yet returned
        self._synced = True  # head is where a frame is due (start, after a frame, after silence)

    def reset(self):
        """The line went silent: a frame cannot continue past the bytes received so far.

        Drops a partial frame; frames for others already complete are
        consumed, and a complete request for us stays for ``next_request()``.
        """
        if self._tail > self._head:
            self._limit = self._tail
            self._scan()
        else:
            self._clear()
            self._limit = _NO_LIMIT
            self._synced = True

    def next_request(self):
        """Return the next :class:`Request` for this unit or for broadcast; None: wait for bytes."""
        n = self._scan()
        if n == 0:
            return None
        self._ready = 0
        buf = self._buf
        i = self._head
        unit = buf[i]
        fc = buf[i + 1]
        # No `fc in (NAME, NAME)`: on MicroPython that builds a tuple per call.
        if fc == FC_READ_HOLDING or fc == FC_READ_INPUT:
            req = Request(unit, fc, (buf[i + 2] << 8) | buf[i + 3], (buf[i + 4] << 8) | buf[i + 5])
        elif fc == FC_WRITE_SINGLE:
            value = (buf[i + 4] << 8) | buf[i + 5]
            req = Request(unit, fc, (buf[i + 2] << 8) | buf[i + 3], 1, [value])
            req.value = value
        elif fc == FC_WRITE_MULTIPLE or fc == FC_READ_WRITE_MULTIPLE:
            w = i + 2 if fc == FC_WRITE_MULTIPLE else i + 6  # the write's fields: address, quantity, byte count
            byte_count = buf[w + 4]
            words = byte_count >> 1
            values = [0] * words
            k = w + 5
            for j in range(words):
                values[j] = (buf[k] << 8) | buf[k + 1]
                k += 2
            req = Request(unit, fc, (buf[w] << 8) | buf[w + 1], (buf[w + 2] << 8) | buf[w + 3], values)
            req.byte_count = byte_count
            if fc == FC_READ_WRITE_MULTIPLE:
                req.read_address = (buf[i + 2] << 8) | buf[i + 3]
                req.read_count = (buf[i + 4] << 8) | buf[i + 5]
        elif fc == FC_READ_FILE or fc == FC_WRITE_FILE:
            req = Request(unit, fc)
            req.data = bytes(buf[i + 2 : i + n - 2])
        else:  # a public function this node does not implement: respond() says so
            req = Request(unit, fc)
        self._consume(n)
        return req

    def _consume(self, n):
        self._head += n
        self._synced = True
        if self._head == self._tail:
            self._clear()
            self._limit = _NO_LIMIT

    def _scan(self):
        # Advance head to the next request for us; return its length, or 0 to wait.
        if self._ready:
            return self._ready
        buf = self._buf
        while True:
            head = self._head
            limit = self._limit
            if limit >= 0 and head >= limit:  # reached the silence: a frame is due here
                self._limit = limit = _NO_LIMIT
                self._synced = True
            closed = limit >= 0  # no byte after `end` belongs to the frame at head
            end = limit if closed else self._tail
            avail = end - head
            if avail < 2:
                if not closed:
                    if avail == 0:
                        self._clear()
                    return 0
            elif buf[head] <= MAX_UNIT:
                unit = buf[head]
                ours = unit == self.unit or unit == BROADCAST
                synced = self._synced
                pending = False
                bad_crc = False
                n = request_length(buf, head, avail)
                if n != 0 and n <= MAX_FRAME:
                    if 0 < n <= avail:
                        if crc_ok(buf, head, n):
                            if ours:
                                self.frames_ok += 1
                                self._ready = n
                                return n
                            self.frames_other += 1
                            self._consume(n)
                            continue
                        bad_crc = True
                    elif not closed:
                        if ours:  # our request may still be arriving: never guess it away
                            return 0
                        # Where a frame is due, wait for all of another unit's
                        # request; while hunting, pass over what is not ours.
                        pending = synced
                n = response_length(buf, head, avail)
                if n != 0 and n <= MAX_FRAME:
                    if 0 < n <= avail:
                        if crc_ok(buf, head, n):
                            self.frames_other += 1
                            self._consume(n)
                            continue
                    elif not closed and synced:
                        pending = True
                if pending:
                    return 0
                if bad_crc and synced:
                    self.crc_errors += 1
            # Not a frame here: drop one byte and hunt from the next.
            self._synced = False
            self._head = head + 1
            self.bytes_dropped += 1

    def _moved(self, by):
        if self._limit >= 0:
            self._limit -= by
            if self._limit <= 0:
                self._limit = _NO_LIMIT

    def _dropped(self):
        self._ready = 0
        self._synced = False
        if self._limit > self._tail:
            self._limit = _NO_LIMIT


# A list, not an array('H'): MicroPython's array silently truncates 70000 to
# 4464 where CPython raises, so a bank bug would differ between the two; with a
# list, respond() sees the bad value on both and answers EX_DEVICE_FAILURE.
# (~500 bytes on the ESP32, allocated once.)
_scratch = [0] * MAX_READ_COUNT


def respond(request, bank, out, scratch=None):
    """Execute ``request`` against ``bank``; write the response frame into ``out``.

    ``out`` is a bytearray of at least 256 bytes. Returns the frame length
    (CRC included), or 0 when nothing must be sent (broadcast). Never raises
    because of the request or the bank: counts outside 1..125 (reads) or
    1..123 (writes) or a byte count other than 2 * count -> EX_ILLEGAL_VALUE; a
    range past register 65535 -> EX_ILLEGAL_ADDRESS; an unsupported function ->
    EX_ILLEGAL_FUNCTION; a ``ModbusException`` from the bank -> its code; any
    other exception from the bank, or a value outside 0..65535 from
    ``bank.read`` -> EX_DEVICE_FAILURE.

    ``bank.read(function, address, count, values_out)`` fills
    ``values_out[0:count]``; ``values_out`` is ``scratch`` if given, else a
    module-level list of 125 slots (reused, never reallocated).
    ``bank.write(address, values, count)`` writes holding registers, all or
    nothing. Reads sent to broadcast are not executed. Functions 20/21 (one
    file sub-request each) go to ``bank.files`` if the bank has one, else
    EX_ILLEGAL_FUNCTION (see ``_file_record``).

    Function 23 (read/write multiple registers) writes, then reads holding
    registers, and answers the words read, so that a write and its read-back
    cost one transaction. Both ranges are checked first (read count 1..125,
    write count 1..121 and byte count 2 * count -> EX_ILLEGAL_VALUE; either
    range past register 65535 -> EX_ILLEGAL_ADDRESS); a refused write reads
    nothing and answers the write's exception. A read that fails after a
    good write answers the read's exception, and the write stays done (the
    spec's order). A 23 sent to broadcast reads, so like a read it is not
    executed at all: nothing is written, nothing answered.
    """
    fc = request.function
    unit = request.unit
    address = request.address
    count = request.count
    if fc == FC_READ_HOLDING or fc == FC_READ_INPUT or fc == FC_READ_WRITE_MULTIPLE:
        if unit == BROADCAST:  # 23 reads too: not executed, nothing written
            return 0
        table = fc
        if fc == FC_READ_WRITE_MULTIPLE:
            # The spec's order: counts and byte count (03) before both ranges (02) (the higher code wins), then
            # the write, then the read.
            table = FC_READ_HOLDING
            code = max(
                _range(count, MAX_RW_WRITE_COUNT, address, request.byte_count),
                _range(request.read_count, MAX_READ_COUNT, request.read_address, request.read_count << 1),
            )
            if not code:
                code = _write(bank, address, request.values, count)
            address = request.read_address
            count = request.read_count
        else:  # a read has no byte count: pass the one its count implies
            code = _range(count, MAX_READ_COUNT, address, count << 1)
        if not code:
            values = _scratch if scratch is None else scratch
            try:
                bank.read(table, address, count, values)
                n = 3
                for k in range(count):
                    v = values[k]
                    if v >> 16:  # negative or above 0xFFFF: a bank bug, not a value
                        raise ValueError("register value out of range")
                    out[n] = v >> 8
                    out[n + 1] = v & 0xFF
                    n += 2
            except ModbusException as exc:
                code = _code(exc)
            except Exception:  # the node must survive any bank failure
                code = EX_DEVICE_FAILURE
            if not code:
                out[0] = unit
                out[1] = fc
                out[2] = count << 1
                return put_crc(out, n)
    elif fc == FC_WRITE_SINGLE:
        code = _write(bank, address, request.values, 1)
        if not code:
            if unit == BROADCAST:
                return 0
            value = request.values[0]
            out[0] = unit
            out[1] = fc
            out[2] = address >> 8
            out[3] = address & 0xFF
            out[4] = value >> 8
            out[5] = value & 0xFF
            return put_crc(out, 6)
    elif fc == FC_WRITE_MULTIPLE:
        code = _range(count, MAX_WRITE_COUNT, address, request.byte_count)
        if not code:
            code = _write(bank, address, request.values, count)
        if not code:
            if unit == BROADCAST:
                return 0
            out[0] = unit
            out[1] = fc
            out[2] = address >> 8
            out[3] = address & 0xFF
            out[4] = count >> 8
            out[5] = count & 0xFF
            return put_crc(out, 6)
    elif fc == FC_READ_FILE or fc == FC_WRITE_FILE:
        code = _file_record(request, bank, out)
        if code < 0:
            return 0 if unit == BROADCAST else put_crc(out, -code)
    else:
        code = EX_ILLEGAL_FUNCTION
    if unit == BROADCAST:
        return 0
    out[0] = unit
    out[1] = (fc | 0x80) & 0xFF
    out[2] = code
    return put_crc(out, 3)


def _file_record(request, bank, out):
    # Functions 20/21 with one sub-request, handed to ``bank.files`` (``read_record(file, record, count,
    # values_out)``, ``write_record(file, record, data)``: data the record's bytes). Returns an exception
    # code, or minus the length of the answer written into ``out`` (CRC not yet added).
    files = getattr(bank, "files", None)
    if files is None:
        return EX_ILLEGAL_FUNCTION
    data = request.data
    read = request.function == FC_READ_FILE
    # One sub-request: 7 bytes for a read; 7 plus the record for a write.
    if len(data) < 8 or data[1] != FILE_REFERENCE:
        return EX_ILLEGAL_VALUE
    file = (data[2] << 8) | data[3]
    record = (data[4] << 8) | data[5]
    count = (data[6] << 8) | data[7]
    if data[0] != (7 if read else 7 + 2 * count) or count < 1 or record > 0x270F:
        return EX_ILLEGAL_VALUE
    try:
        if read:
            if count > MAX_FILE_WORDS:
                return EX_ILLEGAL_VALUE
            values = _scratch
            files.read_record(file, record, count, values)
            out[2] = 2 + 2 * count
            out[3] = 1 + 2 * count
            out[4] = FILE_REFERENCE
            n = 5
            for k in range(count):
                v = values[k]
                if v >> 16:
                    raise ValueError("record value out of range")
                out[n] = v >> 8
                out[n + 1] = v & 0xFF
                n += 2
        else:
            files.write_record(file, record, memoryview(data)[8:])
            n = 2 + len(data)
            out[2 : n] = data  # the answer echoes the request
    except ModbusException as exc:
        return _code(exc)
    except Exception:  # the node must survive any failure of its file handler
        return EX_DEVICE_FAILURE
    out[0] = request.unit
    out[1] = request.function
    return -n


def _range(count, limit, address, byte_count):
    # EX_ILLEGAL_VALUE for a count outside 1..limit or a byte count other than 2 * count, EX_ILLEGAL_ADDRESS for
    # a range past register 65535, else 0.
    if count < 1 or count > limit or byte_count != count << 1:
        return EX_ILLEGAL_VALUE
    if address + count > _ADDRESS_SPACE:
        return EX_ILLEGAL_ADDRESS
    return 0


def _write(bank, address, values, count):
    # Returns 0 on success or the exception code to answer.
    try:
        bank.write(address, values, count)
    except ModbusException as exc:
        return _code(exc)
    except Exception:  # the node must survive any bank failure
        return EX_DEVICE_FAILURE
    return 0


def _code(exc):
    code = exc.code
    if isinstance(code, int) and 1 <= code <= 0xFF:
        return code
    return EX_DEVICE_FAILURE
