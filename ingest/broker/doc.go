// Package broker turns messages consumed from message brokers (Kafka, NATS JetStream, RabbitMQ,
// Amazon SQS, Google Pub/Sub) into events, with the durability of an API publish.
//
// It owns what every broker has in common: the message contract (Decode: a body that is the event's
// data or a whole publish envelope, with type and target also taken from headers), the Handler
// that publishes a batch through api.Server.Publish with bounded concurrency, retries what Sluice
// could not commit yet and records malformed messages as dead letters, and the Manager that runs
// one consumer per broker source on the leader only, restarting consumers with backoff and moving
// them when leadership moves. The drivers in the sub-packages own one broker client each; they
// acknowledge a message to the broker only after the Handler returned its verdict for it, so a
// crash in between redelivers it and the idempotency key (the broker's message id unless the
// message names one) keeps the event single.
//
// docs/brokers.md is the user-facing contract.
package broker
