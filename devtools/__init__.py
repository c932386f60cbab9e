"""Development helpers: the local Kafka-protocol broker and `make run`. Not shipped."""
