package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func usage() {
	fmt.Fprintf(os.Stderr, `sluice %s: a webhooks gateway

Usage:
  sluice serve [flags]     run a node (flags: sluice serve -h)
  sluice cluster <cmd>     administer cluster membership (sluice cluster -h)
  sluice publish [FILE]    publish JSON lines over TCP ingest (sluice publish -h)
  sluice version           print the version
`, version)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "publish":
		err = publishCmd(os.Args[2:])
	case "cluster":
		err = clusterCmd(os.Args[2:], os.Stdout)
	case "version", "--version", "-v":
		fmt.Println("sluice", version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "sluice: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
