"""The gateway as a service: configuration, the daemon wiring, HTTP health and metrics, logs, systemd."""
