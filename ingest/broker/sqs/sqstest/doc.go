// Package sqstest runs goaws (github.com/Admiral-Piett/goaws), an SQS-compatible server, inside a
// test process on 127.0.0.1, for the sqs driver's tests and the process test of cmd/sluice.
//
// goaws v0.4.5 speaks only SQS's query protocol, so sources and clients pointed at it use
// protocol "query". It keeps its queues in package globals, so one server serves the whole test
// process; tests keep apart by queue name. It honours what the no-loss tests need: a received
// message stays hidden for the queue's VisibilityTimeout (the ReceiveMessage parameter of that
// name is ignored: goaws applies the queue attribute), ChangeMessageVisibility moves that
// deadline, and a message neither deleted nor extended becomes visible again, with the same
// MessageId, within a second after its deadline (a periodic task this package starts).
package sqstest
