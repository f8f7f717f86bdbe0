// Package pubsub consumes a Google Cloud Pub/Sub subscription as a Sluice broker source, through
// cloud.google.com/go/pubsub/v2.
//
// It owns the Pub/Sub client of one source: credentials (a service account key from the source,
// else application default credentials), the endpoint override (an emulator: plaintext gRPC
// without credentials), the subscriber and the dead-letter publisher. How Pub/Sub maps onto the
// broker contract:
//
//   - Subscriber.Receive runs with MaxOutstandingMessages = the source's workers, so the client's
//     flow control and the Handler's publish slots agree, and the client keeps extending the ack
//     deadline of every message until it is acked or nacked.
//   - Receive hands over one message per callback; the consumer gathers them into batches (up to
//     a count, or whatever arrived within a few milliseconds of the first) before Process, so
//     the Handler sees batches as it does from the other brokers.
//   - Message.ID is the Pub/Sub message ID, the same on every redelivery. Attributes become
//     headers as they are.
//   - A message is acked only after Process returned its verdict; a rejected one is first
//     published to DeadLetterTopic when the source names one (data and attributes as received,
//     plus a sluice-error attribute). When Process gives up (the consumer is stopping) or the
//     dead-letter publish fails, the message is nacked, so Pub/Sub redelivers it at once.
//   - Lag is unknown to a subscriber (it lives in Cloud Monitoring's num_undelivered_messages);
//     the consumer reports -1.
package pubsub
