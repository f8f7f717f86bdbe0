// Package sqs consumes an Amazon SQS queue (or an SQS-compatible server) as a Sluice broker source,
// through the AWS SDK for Go v2.
//
// It owns the SQS client of one source: credentials (static ones from the source, else the SDK's
// default chain), the endpoint override, the wire protocol (AWS JSON 1.0, or the older query
// protocol that some SQS-compatible servers still speak), and the receive, visibility, dead-letter
// and delete calls. How SQS maps onto the broker contract:
//
//   - Several receivers long-poll in parallel (workers/10 of them, at least one), each taking up to
//     ten messages per ReceiveMessage and handing them to the Handler as one batch.
//   - Message.ID is the SQS MessageId, which SQS keeps across redeliveries, so a message received
//     again after a crash maps to the same idempotency key. Message attributes become headers
//     (String and Number values as sent, Binary values base64-encoded).
//   - While the Handler works on a batch, the consumer extends the batch's visibility timeout
//     every half timeout, so a slow publish (Sluice without a leader, say) does not let SQS hand
//     the same messages to another receiver. If Sluice dies, the extensions stop and the messages
//     reappear once the timeout runs out.
//   - A rejected message is sent to DeadLetterQueueURL when the source names one (body and
//     attributes as received, plus a sluice-error attribute), then deleted with the rest of the
//     batch by DeleteMessageBatch. A queue's own redrive policy never sees Sluice's rejects: they
//     are deleted, not left to exhaust maxReceiveCount.
//   - Lag is the queue's ApproximateNumberOfMessages, polled every LagInterval.
package sqs
