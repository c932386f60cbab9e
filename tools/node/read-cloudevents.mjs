// Reads Kafka records with the npm `cloudevents` package's Kafka binding, as a Node consumer does
// (tests/integration/test_sdk_consumers.py): stdin is a JSON array of records read off the broker,
// bytes in base64 ({"key": b64|null, "value": b64, "headers": {name: b64}}); stdout is a JSON array
// with, per record, the event `Kafka.toEvent` returned ({"event": {...}}) or its error ({"error": "..."}).
//
// A Kafka client (kafkajs, node-rdkafka) hands over key, value and header values as Buffers; the
// binding compares the `content-type` header as a string, so header values are turned into strings
// first, exactly as docs/consumers.md shows.
import { Kafka } from "cloudevents";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const records = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const decoded = (b64) => Buffer.from(b64, "base64");

const results = records.map((record) => {
  // What the Kafka client delivers.
  const delivered = {
    key: record.key === null ? null : decoded(record.key),
    value: decoded(record.value),
    headers: Object.fromEntries(Object.entries(record.headers).map(([name, b64]) => [name, decoded(b64)])),
  };
  // The consumer's call.
  const message = {
    key: delivered.key?.toString(),
    value: delivered.value,
    headers: Object.fromEntries(Object.entries(delivered.headers).map(([name, value]) => [name, value.toString()])),
  };
  try {
    const event = Kafka.toEvent(message);
    const { data, data_base64, ...attributes } = event.toJSON();
    return { event: attributes };
  } catch (error) {
    return { error: String(error) };
  }
});
process.stdout.write(JSON.stringify(results));
