// Package brokertest holds what every broker driver's tests share: a recording Handler, running a
// Consumer for the length of a test, and polling for a condition with a deadline. The real
// brokers each test talks to live in the drivers' own test helpers (kfake, nats-server, goaws,
// pstest, RabbitMQ).
package brokertest
