//go:build !linux

package loadgen

import "time"

func processCPU() time.Duration { return 0 }
