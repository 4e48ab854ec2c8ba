"""The register-map pages in docs/ are generated from the tables and shipped profiles, and current."""

from tools.regmap_docs import DOCS, pages, render


def test_committed_pages_match_the_tables() -> None:
    """`streetedge docs` output equals what is committed, for every role and shipped profile."""
    assert {"lamp", "sdm630", "sdm120", "relay8"} <= set(pages())
    for role in pages():
        page = DOCS / f"{role}.md"
        assert page.exists(), f"{page} missing: run `streetedge docs`"
        assert page.read_text() == render(role), f"{page} is stale: run `streetedge docs`"


def test_page_lists_every_register_with_its_unit() -> None:
    """Each register of the lamp appears with its address and unit."""
    page = render("lamp")
    assert "| 2 | `power` | u16 | -1 | W | read |" in page
    assert "| 0 | `dim_level` | u16 | 0 | % | read/write | 0 .. 100 |" in page


def test_profile_page_names_the_datasheet_and_lists_coils() -> None:
    """A shipped profile's page cites its datasheet and lists its coils and discrete inputs."""
    page = render("relay8")
    assert "- Datasheet: Waveshare wiki, Modbus RTU Relay (D)" in page
    assert "## Coils (function 01 read, 05/15 write)" in page
    assert "| 0 | `relay_1` | bool | 0 |  | read/write | 0 .. 1 | Relay 1 (true: closed) |" in page
    assert "| 7 | `input_8` | bool | 0 |  | read | 0 .. 1 | Digital input 8 (true: active) |" in page
