package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const invoiceDoc = `{
  "type": "invoice.paid",
  "livemode": false,
  "data": {
    "amount": 1500,
    "currency": "EUR",
    "customer": {"id": "cus_1", "email": "ada@example.com", "tier": null},
    "lines": [
      {"sku": "A-1", "qty": 2, "tags": ["x", "y"]},
      {"sku": "B-7", "qty": 1, "tags": []}
    ],
    "labels": ["vip", "eu"],
    "ratio": 0.25
  }
}`

func TestFilterMatchesTable(t *testing.T) {
	headers := map[string]string{"X-Github-Event": "pull_request", "content-type": "application/json"}
	cases := []struct {
		name    string
		headers string
		body    string
		want    bool
	}{
		{"empty filter", "", "", true},
		{"empty objects", `{}`, `{}`, true},
		{"top-level equality", "", `{"type": "invoice.paid"}`, true},
		{"top-level inequality", "", `{"type": "invoice.void"}`, false},
		{"bool equality", "", `{"livemode": false}`, true},
		{"nested object", "", `{"data": {"currency": "EUR"}}`, true},
		{"dot path", "", `{"data.customer.id": "cus_1"}`, true},
		{"dot path mismatch", "", `{"data.customer.id": "cus_2"}`, false},
		{"number equality int vs float", "", `{"data.amount": 1500.0}`, true},
		{"null equality", "", `{"data.customer.tier": null}`, true},
		{"missing field equality", "", `{"data.nope": 1}`, false},
		{"$eq", "", `{"data.currency": {"$eq": "EUR"}}`, true},
		{"$eq object", "", `{"data.customer": {"$eq": {"id": "cus_1", "email": "ada@example.com", "tier": null}}}`, true},
		{"$neq", "", `{"data.currency": {"$neq": "USD"}}`, true},
		{"$neq equal", "", `{"data.currency": {"$neq": "EUR"}}`, false},
		{"$neq missing field", "", `{"data.nope": {"$neq": "x"}}`, true},
		{"$gt", "", `{"data.amount": {"$gt": 1000}}`, true},
		{"$gt equal", "", `{"data.amount": {"$gt": 1500}}`, false},
		{"$gte", "", `{"data.amount": {"$gte": 1500}}`, true},
		{"$lt", "", `{"data.ratio": {"$lt": 0.5}}`, true},
		{"$lte", "", `{"data.ratio": {"$lte": 0.2}}`, false},
		{"$gt on string field is false", "", `{"data.currency": {"$gt": 1}}`, false},
		{"$gt string compare", "", `{"data.currency": {"$gt": "AAA"}}`, true},
		{"range", "", `{"data.amount": {"$gte": 1000, "$lt": 2000}}`, true},
		{"range miss", "", `{"data.amount": {"$gte": 1000, "$lt": 1200}}`, false},
		{"$in", "", `{"data.currency": {"$in": ["USD", "EUR"]}}`, true},
		{"$in miss", "", `{"data.currency": {"$in": ["USD", "GBP"]}}`, false},
		{"$in numbers", "", `{"data.amount": {"$in": [1, 1500]}}`, true},
		{"$nin", "", `{"data.currency": {"$nin": ["USD", "GBP"]}}`, true},
		{"$nin hit", "", `{"data.currency": {"$nin": ["EUR"]}}`, false},
		{"$nin missing field", "", `{"data.nope": {"$nin": ["EUR"]}}`, true},
		{"$exist true", "", `{"data.customer.email": {"$exist": true}}`, true},
		{"$exist true on null", "", `{"data.customer.tier": {"$exist": true}}`, true},
		{"$exist false", "", `{"data.customer.phone": {"$exist": false}}`, true},
		{"$exist false present", "", `{"data.customer.email": {"$exist": false}}`, false},
		{"$regex", "", `{"data.customer.email": {"$regex": "@example\\.com$"}}`, true},
		{"$regex miss", "", `{"data.customer.email": {"$regex": "^bob"}}`, false},
		{"$regex on number is false", "", `{"data.amount": {"$regex": "1"}}`, false},
		{"array contains by equality", "", `{"data.labels": "vip"}`, true},
		{"array contains miss", "", `{"data.labels": "us"}`, false},
		{"array equality whole", "", `{"data.labels": ["vip", "eu"]}`, true},
		{"array element by index", "", `{"data.lines.1.sku": "B-7"}`, true},
		{"array index out of range", "", `{"data.lines.5.sku": "B-7"}`, false},
		{"array any element $", "", `{"data.lines.$.sku": "B-7"}`, true},
		{"array any element $ miss", "", `{"data.lines.$.sku": "C-9"}`, false},
		{"array implicit traversal", "", `{"data.lines.qty": {"$gt": 1}}`, true},
		{"array nested $ and contains", "", `{"data.lines.$.tags": "y"}`, true},
		{"array $in on array field", "", `{"data.labels": {"$in": ["us", "eu"]}}`, true},
		{"array $nin on array field", "", `{"data.labels": {"$nin": ["vip"]}}`, false},
		{"$or", "", `{"$or": [{"type": "invoice.void"}, {"data.amount": {"$gt": 1000}}]}`, true},
		{"$or none", "", `{"$or": [{"type": "invoice.void"}, {"data.amount": {"$gt": 9000}}]}`, false},
		{"$and", "", `{"$and": [{"type": "invoice.paid"}, {"data.currency": "EUR"}]}`, true},
		{"$and one fails", "", `{"$and": [{"type": "invoice.paid"}, {"data.currency": "USD"}]}`, false},
		{"$or nested in field", "", `{"data": {"$or": [{"currency": "USD"}, {"amount": 1500}]}}`, true},
		{"$or of operators on a field", "", `{"data.amount": {"$or": [{"$lt": 10}, {"$gt": 1000}]}}`, true},
		{"$and inside $or", "", `{"$or": [{"$and": [{"type": "x"}, {"livemode": false}]}, {"data.customer.id": "cus_1"}]}`, true},
		{"invoice.paid over 1000 EUR", "", `{"type": "invoice.paid", "data.amount": {"$gt": 1000}, "data.currency": "EUR"}`, true},
		{"header equality, any case", `{"x-github-event": "pull_request"}`, "", true},
		{"header mismatch", `{"X-GitHub-Event": "push"}`, "", false},
		{"header $in", `{"X-GitHub-Event": {"$in": ["push", "pull_request"]}}`, "", true},
		{"header $exist false", `{"X-Other": {"$exist": false}}`, "", true},
		{"header $regex", `{"Content-Type": {"$regex": "^application/json"}}`, "", true},
		{"header and body", `{"X-GitHub-Event": "pull_request"}`, `{"type": "invoice.paid"}`, true},
		{"header ok body fails", `{"X-GitHub-Event": "pull_request"}`, `{"type": "nope"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CompileFilter(Filter{Headers: json.RawMessage(tc.headers), Body: json.RawMessage(tc.body)})
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			doc := NewFilterDoc([]byte(invoiceDoc), headers)
			if got := f.Match(doc); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
			got, why := f.Explain(doc)
			if got != tc.want || (got && why != "") || (!got && why == "") {
				t.Fatalf("Explain = %v %q, want %v and a reason only on failure", got, why, tc.want)
			}
		})
	}
}

func TestFilterOnTopLevelArrayAndForm(t *testing.T) {
	f, err := CompileFilter(Filter{Body: json.RawMessage(`{"$.id": 2}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(NewFilterDoc([]byte(`[{"id":1},{"id":2}]`), nil)) {
		t.Fatal("$.id did not match an element of a top-level array")
	}
	form, err := CompileFilter(Filter{Body: json.RawMessage(`{"SmsStatus": "delivered", "To": {"$regex": "^\\+1"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("SmsStatus=delivered&To=%2B15551234567&From=%2B15557654321")
	if !form.Match(NewFilterDoc(body, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})) {
		t.Fatal("form-encoded body did not match")
	}
	if form.Match(NewFilterDoc(body, map[string]string{"Content-Type": "text/plain"})) {
		t.Fatal("a text body was read as a form")
	}
}

func TestFilterExplainNamesTheFailingClause(t *testing.T) {
	f, err := CompileFilter(Filter{Body: json.RawMessage(`{"type": "invoice.paid", "data.amount": {"$gt": 5000}}`)})
	if err != nil {
		t.Fatal(err)
	}
	ok, why := f.Explain(NewFilterDoc([]byte(invoiceDoc), nil))
	if ok || !strings.Contains(why, `"data.amount" $gt 5000`) || !strings.Contains(why, "value 1500") {
		t.Fatalf("Explain = %v %q", ok, why)
	}
	f, _ = CompileFilter(Filter{Body: json.RawMessage(`{"$or": [{"type": "a"}, {"type": "b"}]}`)})
	if _, why = f.Explain(NewFilterDoc([]byte(invoiceDoc), nil)); !strings.Contains(why, "no $or branch matched") || !strings.Contains(why, `"type" $eq "b"`) {
		t.Fatalf("Explain $or = %q", why)
	}
}

func TestFilterCompileErrors(t *testing.T) {
	cases := []struct {
		name, headers, body, msg string
	}{
		{"unknown operator", "", `{"amount": {"$gtt": 5}}`, `unknown operator "$gtt"`},
		{"unknown top-level operator", "", `{"$nor": []}`, `unknown operator "$nor"`},
		{"operator without field", "", `{"$gt": 5}`, `needs a field`},
		{"not an object", "", `[1]`, "must be a JSON object"},
		{"invalid JSON", "", `{"a":`, "not valid JSON"},
		{"$gt wrong type", "", `{"a": {"$gt": true}}`, "$gt takes a number or a string"},
		{"$in wrong type", "", `{"a": {"$in": "x"}}`, "$in takes an array"},
		{"$nin wrong type", "", `{"a": {"$nin": 3}}`, "$nin takes an array"},
		{"$exist wrong type", "", `{"a": {"$exist": "yes"}}`, "$exist takes true or false"},
		{"$regex wrong type", "", `{"a": {"$regex": 1}}`, "$regex takes a string"},
		{"$regex invalid", "", `{"a": {"$regex": "(a"}}`, "$regex: error parsing regexp"},
		{"$regex too long", "", fmt.Sprintf(`{"a": {"$regex": %q}}`, strings.Repeat("a", MaxFilterRegexLen+1)), "longer than"},
		{"$regex too large", "", `{"a": {"$regex": "((a{1000}){1000}){1000}"}}`, "$regex"},
		{"$or not array", "", `{"$or": {"a": 1}}`, "$or takes a non-empty array"},
		{"$or empty", "", `{"$or": []}`, "$or takes a non-empty array"},
		{"$and element not object", "", `{"$and": [1]}`, "$and[0] must be a filter object"},
		{"mixed operators and fields", "", `{"a": {"$gt": 1, "b": 2}}`, "mixes operators and field names"},
		{"empty segment", "", `{"a..b": 1}`, "empty segment"},
		{"trailing $", "", `{"a.$": 1}`, "ends with $"},
		{"nested header", `{"X-A": {"b": 1}}`, "", "cannot hold nested fields"},
		{"header unknown operator", `{"X-A": {"$like": "b"}}`, "", `headers: "X-A": unknown operator "$like"`},
		{"too deep", "", strings.Repeat(`{"a":`, MaxFilterDepth+3) + "1" + strings.Repeat("}", MaxFilterDepth+3), "nested deeper"},
		{"too many clauses", "", manyClauses(MaxFilterClauses + 1), "more than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileFilter(Filter{Headers: json.RawMessage(tc.headers), Body: json.RawMessage(tc.body)})
			if err == nil || !errors.Is(err, ErrFilter) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrFilter containing %q", err, tc.msg)
			}
		})
	}
}

func manyClauses(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"f%d": %d`, i, i)
	}
	b.WriteString("}")
	return b.String()
}

func TestEventMarshalShowsRawDataAsString(t *testing.T) {
	ev := Event{UID: "e", Data: EventData("To=%2B1&Body=<hi>")}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ Data string }
	if err := json.Unmarshal(b, &back); err != nil || back.Data != "To=%2B1&Body=<hi>" {
		t.Fatalf("marshal = %s (%v)", b, err)
	}
	ev.Data = EventData(`{"a":"<&>"}`)
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil || !strings.Contains(sb.String(), `"data":{"a":"<&>"}`) {
		t.Fatalf("JSON data not shown as published: %s %v", sb.String(), err)
	}
}

func FuzzFilter(f *testing.F) {
	for _, s := range []struct{ filter, doc string }{
		{`{"type": "invoice.paid"}`, invoiceDoc},
		{`{"data.amount": {"$gt": 1000, "$lte": 2000}}`, invoiceDoc},
		{`{"$or": [{"a.$.b": {"$in": [1, "x"]}}, {"c": {"$regex": "^a+$"}}]}`, `{"a": [{"b": 1}], "c": "aaa"}`},
		{`{"x": {"$exist": false}, "y": {"$nin": [null]}}`, `[1, {"x": 2}]`},
		{`{"a": {"$and": [{"$neq": 1}, {"$eq": {"b": [1]}}]}}`, `{"a": {"b": [1.0]}}`},
		{`{"a.0.b": null}`, `not json`},
	} {
		f.Add(s.filter, s.doc)
	}
	f.Fuzz(func(t *testing.T, filter, doc string) {
		c, err := CompileFilter(Filter{Body: json.RawMessage(filter), Headers: json.RawMessage(filter)})
		if err != nil {
			if !errors.Is(err, ErrFilter) {
				t.Fatalf("compile error does not wrap ErrFilter: %v", err)
			}
			return
		}
		d := NewFilterDoc([]byte(doc), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-A": doc})
		m := c.Match(d)
		e, why := c.Explain(d)
		if m != e || (!e && why == "") {
			t.Fatalf("Match %v, Explain %v %q", m, e, why)
		}
	})
}

// BenchmarkFilterPerEvent evaluates one event against N subscriptions' filters: the payload is parsed
// once per event, then each compiled filter is evaluated. One subscription in 100 matches.
func BenchmarkFilterPerEvent(b *testing.B) {
	for _, bc := range []struct {
		n       int
		reparse bool // the naive baseline: parse the payload again for every subscription
	}{{1, false}, {100, false}, {10000, false}, {100, true}} {
		n := bc.n
		name := fmt.Sprintf("subs=%d", n)
		if bc.reparse {
			name = fmt.Sprintf("naive-reparse/subs=%d", n)
		}
		b.Run(name, func(b *testing.B) {
			fs := make([]*CompiledFilter, n)
			for i := range fs {
				body := fmt.Sprintf(`{"type": "invoice.paid", "data.amount": {"$gt": %d}, "data.currency": {"$in": ["EUR", "USD"]}, "data.lines.$.sku": {"$regex": "^[A-Z]-%d$"}}`,
					1000, i%100)
				c, err := CompileFilter(Filter{Body: json.RawMessage(body), Headers: json.RawMessage(`{"X-Github-Event": "pull_request"}`)})
				if err != nil {
					b.Fatal(err)
				}
				fs[i] = c
			}
			data := []byte(invoiceDoc)
			hdr := map[string]string{"X-Github-Event": "pull_request"}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			matched := 0
			for b.Loop() {
				d := NewFilterDoc(data, hdr)
				for _, c := range fs {
					if bc.reparse {
						d = NewFilterDoc(data, hdr)
					}
					if c.Match(d) {
						matched++
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sub")
		})
	}
}
