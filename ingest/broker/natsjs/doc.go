// Package natsjs is the NATS JetStream driver of broker sources, on nats.go's jetstream API.
//
// A source reads its stream through a durable pull consumer (NATSSource.Durable, default
// "sluice-<source uid>") that Run creates or updates: explicit acks, every message of the stream
// or of NATSSource.Subject, AckWait from the source (default 30 s). Messages are pulled ahead and
// handed to the broker.Handler in batches; only after Process returned does the consumer ack a
// message, or, for a rejected one, publish it to DeadLetterSubject (if set) and then Term it so it
// is never redelivered. While a batch is being published the consumer marks it in progress so a
// slow publish is not redelivered under it. When Run stops, the batch in hand and everything
// pulled ahead are Nak'ed for immediate redelivery to the next consumer; after a crash they come
// back when AckWait runs out.
//
// Message ids are "<stream>/<stream sequence>", stable across redeliveries; they make the default
// idempotency key, so a redelivered message finds its event instead of making a second one.
//
// A dead letter is published through JetStream when a stream captures DeadLetterSubject (the
// publish is acknowledged by the stream before the original is terminated), and as a plain NATS
// message, flushed but unacknowledged, when none does. It carries the message's headers plus
// sluice-error (the reason) and sluice-message-id. Lag is the consumer's NumPending as of the last
// message delivered: messages of the stream (matching the filter) not yet delivered to Sluice.
package natsjs
