"""Device profiles: the shipped ones load, and every mistake is refused naming the file, the register and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.contracts import COIL, DISCRETE, HOLDING, INPUT, ROLES, load_role
from gateway.profiles import ProfileError, load_profile, parse_profile, shipped_profile, shipped_profiles
from gateway.service.config import ConfigError, load_config

HEAD = """
[device]
name = "water"
manufacturer = "Acme"
model = "W1"
datasheet = "Acme W1 Modbus manual, rev. 3"
"""

GOOD = HEAD + """
[[register]]
name = "volume"
function = "input"
address = 0
type = "u32"
word_order = "low_first"
scale = -3
unit = "m3"

[[register]]
name = "flow_limit"
function = "holding"
address = 10
type = "u16"
scale = -1
unit = "l/s"
writable = true
min = 0.5
max = 120.0

[[register]]
name = "valve"
function = "coil"
address = 0
writable = true

[[register]]
name = "leak"
function = "discrete_input"
address = 3
"""


def test_the_shipped_profiles_load_with_their_datasheets() -> None:
    """Three real devices ship; each names its datasheet and is a role the gateway knows."""
    assert shipped_profiles() == ["relay8", "sdm120", "sdm630"]
    for name in shipped_profiles():
        profile = shipped_profile(name)
        assert profile.device.datasheet
        assert name in ROLES
        assert load_role(name) is load_role(name)
        assert load_role(name).role == name


def test_the_sdm630_profile_keeps_the_map_of_the_module_it_replaces() -> None:
    """34 float32 input registers from the manual's addresses, read in one request of 80."""
    regmap = load_role("sdm630")
    assert len(regmap.registers) == 34
    assert regmap.blocks(INPUT) == ((0, 80),)
    assert {r.type for r in regmap.registers} == {5}
    assert (regmap["power"].address, regmap["frequency"].address, regmap["import_energy"].address) == (52, 70, 72)
    assert regmap["import_energy"].unit == "kWh"
    assert regmap["reactive_power"].unit == "var"


def test_the_relay_module_has_coils_inputs_and_its_address() -> None:
    regmap = load_role("relay8")
    assert regmap.blocks(COIL) == ((0, 8),)
    assert regmap.blocks(DISCRETE) == ((0, 8),)
    assert regmap.blocks(HOLDING) == ((0x4000, 1),)
    assert [r.name for r in regmap.registers if r.access == 1] == [f"relay_{i}" for i in range(1, 9)]


def test_a_profile_compiles_to_raw_bounds_and_word_order() -> None:
    """Engineering ranges become raw bounds at the register's scale; the word order is kept."""
    regmap = parse_profile(GOOD, source="water.toml").regmap
    limit = regmap["flow_limit"]
    assert (limit.minimum, limit.maximum) == (5, 1200)
    assert limit.to_raw(12.5) == 125
    with pytest.raises(ValueError, match="outside"):
        limit.to_raw(120.1)
    volume = regmap["volume"]
    assert volume.order == 1
    assert volume.value(volume.from_words([0x5678, 0x1234])) == 0x12345678 / 1000
    assert regmap["valve"].table == COIL
    assert regmap["leak"].table == DISCRETE
    assert regmap["leak"].type == 4


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


MISTAKES = [
    (replace('function = "coil"', 'function = "coils"'), "register 'valve' (register[2]), field 'function': "
     "expected one of 'coil', 'discrete_input', 'holding', 'input', got 'coils'; did you mean 'coil'?"),
    (replace("scale = -3", "scael = -3"), "register 'volume' (register[0]), field 'scael': unknown field; "
     "did you mean 'scale'?"),
    (replace("address = 10", "address = 70000"), "register 'flow_limit' (register[1]), field 'address': "
     "expected `int` <= 65535"),
    (replace('unit = "m3"', 'unit = "m^3"'), "register 'volume' (register[0]), field 'unit': 'm^3' is not a "
     "SenML unit; did you mean 'm3'?"),
    (replace('address = 3\n', 'address = 3\nwritable = true\n'), "register 'leak' (register[3]), field "
     "'writable': only holding registers and coils can be written"),
    (replace("min = 0.5\n", ""), "register 'flow_limit' (register[1]), field 'min': a writable value needs min "
     "and max"),
    (replace('address = 0\nwritable = true', 'address = 0\ntype = "u16"\nwritable = true'),
     "register 'valve' (register[2]), field 'type': a coil is one bit: bool, got 'u16'"),
    (replace('name = "leak"\nfunction = "discrete_input"', 'name = "volume"\nfunction = "discrete_input"'),
     "register 'volume' (register[3]), field 'name': the name is already used by register[0]"),
    (replace('type = "u16"\n', ""), "register 'flow_limit' (register[1]), field 'type': missing: one of u16, s16, "
     "u32, s32, float32 for a holding register"),
    (replace("min = 0.5", "min = 0.55"), "register 'flow_limit' (register[1]), field 'min': 0.55 is not a whole "
     "number of steps of 1e-1"),
    (replace("max = 120.0", "max = 7000.0"), "register 'flow_limit' (register[1]), field 'max': 7000.0 does not fit "
     "a u16 at scale -1 (0.0..6553.5)"),
    (replace('type = "u16"', 'type = "u16"\nword_order = "low_first"'), "register 'flow_limit' (register[1]), "
     "field 'word_order': only a 32-bit value has a word order"),
    (replace('datasheet = "Acme W1 Modbus manual, rev. 3"\n', ""), "device, field 'datasheet': missing (required)"),
    (replace('name = "water"', 'name = "lamp"'), "device, field 'name': 'lamp' is a streetedge node role"),
    (replace('address = 3\n', 'address = 3\n\n[[register]]\nname = "far"\nfunction = "discrete_input"\n'
             'address = 9000\n'), "register 'far' (register[4]), field 'address': the discrete_input values span "
     "3..9000"),
    (replace("address = 0\ntype", "address = 9\ntype").replace('function = "input"', 'function = "holding"'),
     "register 'flow_limit' (register[1]), field 'address': overlaps volume at 10"),
    (replace('name = "volume"', 'name = "seq"'), "register 'seq' (register[0]), field 'name': 'seq' is reserved"),
    (GOOD.replace("[[register]]", "[[registers]]"), "top level, field 'registers': unknown field; did you mean "
     "'register'?"),
    (GOOD + "\n[[register]\n", "not valid TOML"),
    (replace('unit = "m3"', 'unit = "m3"\npoll = "counters"'), "register 'volume' (register[0]), field 'poll': "
     "expected one of 'counter', 'identity', 'measure', 'setting', got 'counters'; did you mean 'counter'?"),
]


@pytest.mark.parametrize(("text", "message"), MISTAKES, ids=lambda v: str(v)[:30])
def test_a_mistake_is_refused_naming_file_register_and_field(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, source="profiles/water.toml")
    assert str(caught.value).startswith("profiles/water.toml: ")
    assert message in str(caught.value)


def test_the_same_address_in_two_tables_is_no_overlap() -> None:
    """Coils, discrete inputs, holding and input registers are four address spaces."""
    parse_profile(replace("address = 10", "address = 1"), source="water.toml")


def test_a_configuration_names_a_profile_file_relative_to_itself(tmp_path: Path) -> None:
    """``profile = "..."`` reads the file beside the configuration; the node's role is the profile's name."""
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "water.toml").write_text(GOOD.replace('"water"', '"water_cfg"'))
    (tmp_path / "gateway.toml").write_text(
        'site = "s"\ngateway = "g"\n[[bus]]\nname = "b"\ntype = "tcp"\nhost = "127.0.0.1"\n'
        '[[node]]\nid = "w-1"\nbus = "b"\nunit = 1\nprofile = "devices/water.toml"\n'
        '[[node]]\nid = "m-1"\nbus = "b"\nunit = 2\nrole = "sdm120"\n'
    )
    config = load_config(tmp_path / "gateway.toml")
    assert [n.role for n in config.node] == ["water_cfg", "sdm120"]
    assert "water_cfg" in ROLES
    assert load_role("water_cfg")["valve"].table == COIL
    assert load_config(tmp_path / "gateway.toml") == config  # read again (a reload): the same file, no conflict


def test_a_configuration_with_a_broken_profile_names_node_file_register_and_field(tmp_path: Path) -> None:
    (tmp_path / "water.toml").write_text(replace('unit = "m3"', 'unit = "m^3"').replace('"water"', '"water_bad"'))
    (tmp_path / "gateway.toml").write_text(
        'site = "s"\ngateway = "g"\n[[bus]]\nname = "b"\ntype = "tcp"\nhost = "127.0.0.1"\n'
        '[[node]]\nid = "w-1"\nbus = "b"\nunit = 1\nprofile = "water.toml"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "gateway.toml")
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'gateway.toml'}: node[0].profile: {tmp_path / 'water.toml'}: ")
    assert "register 'volume' (register[0]), field 'unit': 'm^3' is not a SenML unit" in text


@pytest.mark.parametrize(("line", "message"), [
    ('role = "sdm630"', "role 'sdm630' contradicts"),
    ('profile = "missing.toml"', "no such profile file"),
])
def test_a_profile_node_that_contradicts_itself_is_refused(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "water.toml").write_text(GOOD.replace('"water"', '"water_x"'))
    profile = "" if line.startswith("profile") else 'profile = "water.toml"\n'
    (tmp_path / "gateway.toml").write_text(
        'site = "s"\ngateway = "g"\n[[bus]]\nname = "b"\ntype = "tcp"\nhost = "127.0.0.1"\n'
        f'[[node]]\nid = "w-1"\nbus = "b"\nunit = 1\n{profile}{line}\n'
    )
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "gateway.toml")


def test_a_profile_may_not_take_a_shipped_name(tmp_path: Path) -> None:
    (tmp_path / "meter.toml").write_text(GOOD.replace('"water"', '"sdm120"'))
    with pytest.raises(ConfigError, match="'sdm120' is already a shipped profile"):
        load_config_text(tmp_path, 'profile = "meter.toml"')


def load_config_text(folder: Path, line: str) -> object:
    (folder / "gateway.toml").write_text(
        'site = "s"\ngateway = "g"\n[[bus]]\nname = "b"\ntype = "tcp"\nhost = "127.0.0.1"\n'
        f'[[node]]\nid = "w-1"\nbus = "b"\nunit = 1\n{line}\n'
    )
    return load_config(folder / "gateway.toml")


def test_a_missing_profile_file_is_named() -> None:
    with pytest.raises(ProfileError, match=r"nowhere\.toml: no such profile file"):
        load_profile(Path("nowhere.toml"))
    with pytest.raises(ProfileError, match="no shipped profile 'sdm12'; did you mean 'sdm120'"):
        shipped_profile("sdm12")


def test_fuzz_small_run_only_accepts_or_refuses() -> None:
    """2,000 mutated profiles (python -m tools.fuzz.profile runs 100,000): a profile or a ProfileError, no crash."""
    from tools.fuzz import profile as fuzz

    for summary in fuzz.run(2000, seed=3).values():
        assert summary.crashes == [] and summary.hangs == [], summary.crashes[:1]
        assert summary.accepted > 0 and summary.refused > 0


def test_the_documented_example_is_a_valid_profile() -> None:
    """The profile shown in docs/operations.md loads, and means what its comments say."""
    import re

    text = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    found = re.search(r"```toml\n(\[device\].*?)```", text, re.S)
    assert found, "no profile example in docs/operations.md"
    regmap = parse_profile(found[1], source="operations.md").regmap
    assert regmap["volume"].order == 1 and regmap["volume"].unit == "m3"
    assert regmap["valve"].table == COIL and regmap["valve"].access == 1
    assert (regmap["flow_limit"].minimum, regmap["flow_limit"].maximum) == (5, 1200)


def test_poll_classes_come_from_the_profile_and_plan_the_routine_poll() -> None:
    from gateway.polling.poll_plan import COUNTER, MEASURE, SETTING, LineCost, plan_for, poll_classes

    own = parse_profile(GOOD.replace('unit = "m3"', 'unit = "m3"\npoll = "counter"')).regmap
    assert poll_classes(own) == {"volume": COUNTER, "flow_limit": MEASURE, "valve": MEASURE, "leak": MEASURE}
    sdm120 = shipped_profile("sdm120").regmap
    classes = poll_classes(sdm120)
    assert classes["import_energy"] == COUNTER and classes["meter_id"] == SETTING and classes["power"] == MEASURE
    routine = plan_for(sdm120, frozenset({MEASURE}), LineCost(9600))
    assert {table for table, _, _ in routine.requests} == {INPUT}  # the holding words wait for a command
    everything = plan_for(sdm120, frozenset({MEASURE, COUNTER, SETTING}), LineCost(9600))
    assert {table for table, _, _ in everything.requests} == {INPUT, HOLDING}
