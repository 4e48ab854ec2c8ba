"""The luminaire model behind the virtual board (pure arithmetic, run on CPython here)."""

from __future__ import annotations

from boards.sim.lamp_parts import LampPhysics


def lit(level: int, seconds: float = 2.0) -> LampPhysics:
    """A lamp with the relay closed at ``level`` %, after ``seconds`` of 10 ms steps."""
    lamp = LampPhysics(seed=1)
    lamp.set_relay(True)
    lamp.set_level(level)
    for _ in range(int(seconds * 100)):
        lamp.step(0.01)
    return lamp


def test_full_light_draws_about_66_watts() -> None:
    """60 W of LEDs through a 92 % driver plus 0.5 W standby."""
    assert 65.0 < lit(100).power_w() < 66.5


def test_dimming_cuts_power_more_than_proportionally_to_the_driver_loss() -> None:
    """20 % light: about 14 W (the driver is less efficient at low load)."""
    p = lit(20).power_w()
    assert 13.0 < p < 16.0


def test_light_fades_over_half_a_second() -> None:
    """The driver fades: after 0.25 s at most half of full scale."""
    lamp = lit(100, seconds=0.25)
    assert 0.4 < lamp.light <= 0.55
    lamp = lit(100, seconds=0.6)
    assert lamp.light == 1.0


def test_relay_open_means_no_power_and_no_light() -> None:
    """The meter sits upstream of the relay: it still sees mains, but 0 W and 0 A."""
    lamp = lit(100)
    lamp.set_relay(False)
    lamp.step(0.01)
    v, i, p = lamp.measure()
    assert (lamp.light, p, i) == (0.0, 0.0, 0.0)
    assert 228.0 < v < 232.0


def test_current_follows_power_and_power_factor() -> None:
    """I = P / (V * pf), pf 0.95 at full load."""
    v, i, p = lit(100).measure()
    assert abs(i - p / (v * 0.95)) < 1e-9


def test_driver_warms_toward_ambient_plus_25_kelvin() -> None:
    """After many time constants at full power the driver sits near 45 C (20 C ambient)."""
    lamp = lit(100)
    for _ in range(100):
        lamp.step(60.0)
    assert 44.0 < lamp.temperature_c < 46.0


def test_a_failed_driver_draws_nothing() -> None:
    """fault: driver -> no light, no power, even with the relay closed at 100 %."""
    lamp = LampPhysics()
    lamp.failed = True
    lamp.set_relay(True)
    lamp.set_level(100)
    lamp.step(1.0)
    assert (lamp.light, lamp.power_w()) == (0.0, 0.0)


def test_energy_integrates_power() -> None:
    """One hour at full light is about 65.7 Wh."""
    lamp = lit(100)
    start = lamp.energy_wh
    for _ in range(3600):
        lamp.step(1.0)
    assert 65.0 < lamp.energy_wh - start < 66.5


def test_noise_is_deterministic_per_seed() -> None:
    """Same seed, same readings; another seed, other readings."""
    a, b, c = LampPhysics(seed=3), LampPhysics(seed=3), LampPhysics(seed=4)
    assert [a.measure() for _ in range(5)] == [b.measure() for _ in range(5)]
    assert a.measure() != c.measure()
