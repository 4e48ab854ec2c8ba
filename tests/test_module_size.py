"""Gateway modules stay small enough to read in one sitting: 400 lines at most (one concept per module)."""

from __future__ import annotations

from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[1] / "gateway"
LIMIT = 400


def test_no_gateway_module_is_over_the_limit() -> None:
    sizes = {p.relative_to(GATEWAY.parent): len(p.read_text().splitlines()) for p in GATEWAY.rglob("*.py")}
    assert len(sizes) > 40
    assert {str(p): n for p, n in sizes.items() if n > LIMIT} == {}
