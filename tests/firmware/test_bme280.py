# common-subset
"""The BME280 driver against the datasheet's worked example and a simulated chip on a simulated I2C bus.

The simulated chip turns physical values into raw ADC values by inverting the
datasheet's double-precision formulas (an implementation independent of the
driver's integer ones) and quantises them as the chip does at oversampling x1
(16 bits). The driver must give back the physical values within what that
allows: the chip's resolution at x1 (datasheet table 7: 0.005 degC, 2.62 Pa;
humidity 16-bit: 0.008 %RH), the integer formulas' output steps (0.01 degC,
1/256 Pa, 1/1024 %RH) and the difference between the integer and the
double-precision formulas.
"""

import time

import mp_env  # noqa: F401  (time.ticks_* on CPython, frozen asyncio on MicroPython)

from boards.sim.bme280 import DATASHEET_TP, TYPICAL_H, SimBME280, SimI2C
from boards.sim.rng import Rng
from firmware import bme280 as drv

TEMP_TOL = 0.005 + 0.01  # measured worst over 3000 random points: 0.0074
PRESS_TOL = 2.62 + 0.5  # measured worst: 1.86 Pa
HUM_TOL = 0.008 + 0.001 + 0.003  # measured worst: 0.0098 %RH


def _part(fault=None, h=TYPICAL_H, values=(20.0, 50.0, 101325.0)):
    state = {"v": values}
    chip = SimBME280(lambda: state["v"], h=h, fault=fault)
    bus = SimI2C({drv.ADDRESS: chip})
    return state, chip, drv.BME280(bus)


def _measure(sensor):
    assert sensor.start(), drv.FAULT_NAMES[sensor.fault]
    for _ in range(50):
        time.sleep_ms(2)
        if sensor.ready():
            return sensor.read()
    raise AssertionError("conversion never finished")


def test_datasheet_worked_example():
    s = drv.BME280(None)
    s.trim = tuple(DATASHEET_TP) + (0,) * 6  # dig_T1..T3, dig_P1..P9; no humidity here
    assert s.compensate_t(519888) == 2508  # 25.08 degC
    assert s.t_fine == 128422
    p = s.compensate_p(415148)
    assert abs(p / 256.0 - 100653.27) < 0.05  # the datasheet's 100653.27 Pa (double precision)


def test_begin_reads_chip_id_and_trimming_parameters():
    _, _, sensor = _part()
    assert sensor.begin()
    assert sensor.chip_id == 0x60
    assert tuple(sensor.trim[:3]) == tuple(DATASHEET_TP[:3])
    assert tuple(sensor.trim[3:12]) == tuple(DATASHEET_TP[3:])
    assert tuple(sensor.trim[12:]) == tuple(TYPICAL_H)


def test_negative_h4_h5_h6_unpack_with_their_sign():
    h = (100, -120, 7, -5, -300, -20)
    _, _, sensor = _part(h=h)
    assert sensor.begin()
    assert tuple(sensor.trim[12:]) == h


def _check(sensor, state, temp, hum, press):
    state["v"] = (temp, hum, press)
    t, p, h = _measure(sensor)
    assert abs(t / 100.0 - temp) <= TEMP_TOL, (temp, t)
    assert abs(p / 256.0 - press) <= PRESS_TOL, (press, p / 256.0)
    assert abs(h / 1024.0 - hum) <= HUM_TOL, (hum, h / 1024.0)


def test_measurements_decode_to_the_physical_values():
    state, chip, sensor = _part()
    assert sensor.begin()
    for temp, hum, press in (
        (20.0, 50.0, 101325.0),
        (-25.37, 91.5, 98000.0),
        (0.0, 10.25, 103500.0),
        (38.91, 23.4, 95123.4),
        (12.345, 67.89, 100000.0),
        (-40.0, 99.0, 110000.0),
        (65.0, 5.0, 70000.0),
    ):
        _check(sensor, state, temp, hum, press)
    assert chip.conversions == 7


def test_a_grid_of_conditions():
    state, _, sensor = _part(h=(75, 370, 0, 299, 50, 30))
    assert sensor.begin()
    temp = -20.0
    while temp <= 45.0:
        for hum in (15.0, 55.5, 95.0):
            _check(sensor, state, temp, hum, 100500.0 - temp * 37.0)
        temp += 13.1


def test_random_conditions_over_the_operating_range():
    """The compensation inverted and redone at 300 random points, -40..85 degC, 1..99 %RH, 600..1100 hPa."""
    chip = SimBME280(lambda: (0.0, 0.0, 0.0))
    sensor = drv.BME280(SimI2C({drv.ADDRESS: chip}))
    assert sensor.begin()
    r = Rng(7)
    for _ in range(300):
        temp, hum, press = r.uniform(-40.0, 85.0), r.uniform(1.0, 99.0), r.uniform(60000.0, 110000.0)
        adc_t, t_fine = chip.invert_t(temp)
        adc_p = chip.invert_p(press, t_fine)
        adc_h = chip.invert_h(hum, t_fine)
        t = sensor.compensate_t((adc_t + 8) >> 4 << 4)  # 16 bits at x1, as the chip delivers
        p = sensor.compensate_p((adc_p + 8) >> 4 << 4)
        h = sensor.compensate_h(adc_h)
        assert abs(t / 100.0 - temp) <= TEMP_TOL, (temp, t)
        assert abs(p / 256.0 - press) <= PRESS_TOL, (press, p)
        assert abs(h / 1024.0 - hum) <= HUM_TOL, (hum, h)


def test_humidity_needs_ctrl_hum_before_ctrl_meas():
    _state, chip, sensor = _part()
    assert sensor.begin()
    chip.regs[0xF2] = 0  # as after a power-on without the driver's set-up
    chip._ctrl_hum_pending = 0
    assert sensor.start()  # start() writes ctrl_hum, then ctrl_meas: humidity is measured
    time.sleep_ms(15)
    assert sensor.ready()
    assert sensor.read() is not None


def test_no_chip_reports_no_answer_and_never_raises():
    _, _, sensor = _part(fault="absent")
    assert not sensor.begin()
    assert sensor.fault == drv.FAULT_NO_ANSWER
    assert not sensor.start()
    assert not sensor.ready()
    assert sensor.read() is None
    assert sensor.errors >= 3


def test_an_empty_bus_reports_no_answer():
    sensor = drv.BME280(SimI2C({}))
    assert not sensor.begin()
    assert sensor.fault == drv.FAULT_NO_ANSWER


def test_a_bmp280_is_refused_by_its_chip_id():
    _, _, sensor = _part(fault="bad_id")
    assert not sensor.begin()
    assert sensor.fault == drv.FAULT_CHIP_ID
    assert sensor.chip_id == 0x58
    assert not sensor.start()


def test_a_conversion_that_never_ends_is_not_ready():
    _, _, sensor = _part(fault="stuck")
    assert sensor.begin()
    assert sensor.start()
    time.sleep_ms(20)
    assert not sensor.ready()
    sensor.not_ready()
    assert sensor.fault == drv.FAULT_NOT_READY


def test_skipped_channels_are_a_data_fault():
    _, _, sensor = _part(fault="skip")
    assert sensor.begin()
    assert sensor.start()
    time.sleep_ms(15)
    assert sensor.ready()
    assert sensor.read() is None
    assert sensor.fault == drv.FAULT_DATA


def test_a_chip_that_comes_back_is_used_again():
    state, chip, sensor = _part(fault="absent")
    assert not sensor.start()
    chip.fault = None
    _check(sensor, state, 21.0, 40.0, 101000.0)
    assert sensor.fault == drv.FAULT_NONE
