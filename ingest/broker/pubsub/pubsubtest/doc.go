// Package pubsubtest serves the official Pub/Sub fake (cloud.google.com/go/pubsub/v2/pstest) on
// 127.0.0.1 inside a test process, for the pubsub driver's tests and the process test of
// cmd/sluice. Sources reach it as an emulator: its address as endpoint, no credentials.
package pubsubtest
