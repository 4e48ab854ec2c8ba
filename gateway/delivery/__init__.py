"""Delivery: every poll into the durable outbox, out in data messages (compact or SenML), deleted on PUBACK."""
