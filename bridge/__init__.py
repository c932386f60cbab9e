"""altinn-kafka-bridge: Altinn 3 Correspondence events from webhook to Kafka."""

__version__ = "0.1.0"
