package broker

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/model"
)

// benchBodies are the broker-ingest scenario's message body (loadgen.Data: a 1 KiB object that is the
// event's data, stamped as the producer stamps it) and the same data wrapped in a publish envelope.
func benchBodies() map[string][]byte {
	data := loadgen.Data(1024)
	loadgen.Stamp(data, time.Unix(1764000000, 123456789))
	env := loadgen.PublishBody(epID, "bench.event", 1024)
	loadgen.Stamp(env, time.Unix(1764000000, 123456789))
	return map[string][]byte{"data-1KiB": data, "envelope-1KiB": env}
}

// BenchmarkDecode decodes one message as the Handler does, in the default (auto) body mode with the
// broker-ingest scenario's source defaults.
func BenchmarkDecode(b *testing.B) {
	src := testSource(model.BrokerConfig{EventType: "bench.event", EndpointID: epID})
	bodies := benchBodies()
	for _, name := range []string{"data-1KiB", "envelope-1KiB"} {
		body := bodies[name]
		b.Run(name, func(b *testing.B) {
			m := &Message{ID: "bench/0/42", Body: body}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(src, m, 1<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
