"""The broker side: the connection and publish path, the topic namespace, MQTT 5 user properties."""
