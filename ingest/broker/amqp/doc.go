// Package amqp is the RabbitMQ (AMQP 0-9-1) driver of broker sources: it consumes one queue of an
// amqp:// or amqps:// server with github.com/rabbitmq/amqp091-go and hands the messages to the
// broker.Handler in batches.
//
// How the broker's machinery maps onto the Handler contract:
//
//   - Flow control: the consuming channel's basic.qos prefetch is the source's workers (default
//     64), so RabbitMQ never has more messages of this consumer unacknowledged than Sluice
//     publishes at once. A batch is what is ready when the first message arrives plus whatever
//     comes within BatchWait, capped at the prefetch.
//   - Message id: the AMQP message-id property. Redeliveries carry the same property, so the
//     default idempotency key (msg:<source uid>:<message-id>) makes a redelivery after a crash a
//     duplicate, not a second event. A message without message-id gets an id unique to this
//     delivery ("delivery:<connection nonce>:<delivery tag>"): such messages are at-least-once, a
//     crash between commit and ack publishes them twice. The body is deliberately not hashed
//     into an id, since two identical bodies are often two legitimate events. Producers that
//     cannot set message-id can name a key in the sluice-idempotency-key header instead.
//   - Acknowledgement: nothing is acked before Process returned. Accepted messages and the
//     rejected ones already published to the dead-letter exchange are acked with one basic.ack
//     (multiple) at the batch's highest such tag, after the rejected messages without a
//     dead-letter exchange were nacked one by one; batches are sequential on the channel, so
//     every earlier tag is settled by then.
//   - Dead letters: with DeadLetterExchange set, a rejected message is republished there (body,
//     properties and headers as consumed, plus sluice-error) on a separate channel in confirm mode
//     and is acked only once RabbitMQ confirmed it; the publish is mandatory, and one that
//     RabbitMQ returns as unroutable falls back to basic.nack without requeue. Without it, a
//     rejected message is nacked without requeue, which RabbitMQ routes to the queue's own
//     x-dead-letter-exchange if it has one and drops otherwise. Either way the Handler has
//     already recorded it in Sluice.
//   - Failure: a closed connection or channel (NotifyClose), a cancelled consumer (the queue was
//     deleted) or a failed ack ends Run with an error, and the Manager restarts it; messages not
//     yet acked go back to the queue.
//   - Lag: the queue's ready message count from queue.declare (passive) on a channel of its own,
//     every LagInterval. It does not count the messages this consumer holds unacknowledged.
package amqp
