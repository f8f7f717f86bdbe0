// Command sluice is the gateway binary: `sluice serve` runs a node (store, REST API, delivery
// engine); flags map one to one onto SLUICE_* environment variables. It owns process wiring only:
// configuration, logging, listeners, signal handling and graceful shutdown.
package main
