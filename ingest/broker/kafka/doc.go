// Package kafka is the Kafka driver of broker sources, on franz-go's kgo client.
//
// A source consumes its topics as one member of a consumer group (KafkaSource.ConsumerGroup,
// default "sluice-<source uid>"). The consumer polls at most maxPoll records, hands them to the
// broker.Handler, produces the rejected ones to the dead-letter topic if the source names one,
// and only then commits the offsets of exactly those records. Auto-commit is off and the client
// blocks rebalances between a poll and the commit (kgo.BlockRebalanceOnPoll), so a revoke never
// finds processed but uncommitted records, and nothing is ever committed for records whose
// Process did not return: when Run's context ends mid-batch the batch is dropped uncommitted and
// the group's next owner reads it again.
//
// Message ids are "<topic>/<partition>/<offset>", stable across redeliveries; they make the
// default idempotency key, so a redelivered record finds its event instead of making a second one.
// A topic deleted and created again restarts its offsets and its ids with them: such records look
// like duplicates while the old events' idempotency keys are still remembered.
//
// Dead letters go to DeadLetterTopic with the record's key, value and headers, plus sluice-error
// (the reason) and sluice-message-id; the produce is acknowledged by the brokers before the offset
// is committed. Lag is the sum over owned partitions of the fetch's high watermark minus the next
// offset to consume.
package kafka
