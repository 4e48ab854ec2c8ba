"""A real broker cluster on loopback: three RabbitMQ nodes for the tests, the bench and ``streetedge cluster``."""
