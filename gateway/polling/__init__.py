"""Polling: the schedule of each bus, read plans compiled from register maps, node state, event catch-up."""
