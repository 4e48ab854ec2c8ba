"""Signed commands: envelope (COSE), trusted keys, replay store, planning, execution on the buses, audit."""
