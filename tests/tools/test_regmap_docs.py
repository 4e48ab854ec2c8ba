"""The register-map pages in docs/ are generated from the tables, and current."""

from protocols.roles import ROLES
from tools.regmap_docs import DOCS, render


def test_committed_pages_match_the_tables() -> None:
    """`streetedge docs` output equals what is committed, for every role."""
    for role in ROLES:
        page = DOCS / f"{role}.md"
        assert page.exists(), f"{page} missing: run `streetedge docs`"
        assert page.read_text() == render(role), f"{page} is stale: run `streetedge docs`"


def test_page_lists_every_register_with_its_unit() -> None:
    """Each register of the lamp appears with its address and unit."""
    page = render("lamp")
    assert "| 2 | `power` | u16 | -1 | W | read |" in page
    assert "| 0 | `dim_level` | u16 | 0 | % | read/write | 0 .. 100 |" in page
