package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Filter is a subscription's header and body filter in Convoy's MongoDB-like syntax: a JSON object
// whose keys are field paths (dot-separated; "$" stands for any array element) and whose values are
// either a value to equal or an object of operators ($eq $neq $gt $gte $lt $lte $in $nin $exist
// $regex), with $or and $and taking arrays of such objects. Headers and Body are kept as given;
// CompileFilter turns them into a matcher once, when the subscription is saved.
type Filter struct {
	Headers json.RawMessage `json:"headers,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// Limits that bound a filter's compile and evaluation cost (evaluation is linear in clauses times the
// size of the payload; Go's regexp is RE2, linear in the input).
const (
	MaxFilterClauses  = 256 // conditions in one filter (headers and body together)
	MaxFilterDepth    = 16  // nesting of objects, $or and $and
	MaxFilterRegexLen = 512 // bytes of one $regex pattern
	MaxFilterPathLen  = 32  // segments in one field path
)

// ErrFilter is wrapped by every filter compile error; the message names the offending operator or path.
var ErrFilter = errors.New("invalid filter")

// CompiledFilter is a Filter ready to evaluate. It is immutable and safe for concurrent use.
type CompiledFilter struct {
	headers, body *group // nil: no clauses (matches everything)
}

// IsEmpty reports whether the filter has no clauses (matches every event).
func (c *CompiledFilter) IsEmpty() bool { return c == nil || (c.headers == nil && c.body == nil) }

// NeedsBody reports whether evaluating the filter reads the payload.
func (c *CompiledFilter) NeedsBody() bool { return c != nil && c.body != nil }

// CompileFilter validates f and compiles it. An error wraps ErrFilter and names the bad part, e.g.
// `body: "data.amount": unknown operator "$gtt"`.
func CompileFilter(f Filter) (*CompiledFilter, error) {
	cc := &compiler{}
	var out CompiledFilter
	var err error
	if out.headers, err = cc.compileTop("headers", f.Headers, true); err != nil {
		return nil, err
	}
	if out.body, err = cc.compileTop("body", f.Body, false); err != nil {
		return nil, err
	}
	return &out, nil
}

// opKind is a comparison operator.
type opKind uint8

const (
	opEq opKind = iota + 1
	opNeq
	opGt
	opGte
	opLt
	opLte
	opIn
	opNin
	opExist
	opRegex
)

var opNames = map[string]opKind{
	"$eq": opEq, "$neq": opNeq, "$gt": opGt, "$gte": opGte, "$lt": opLt, "$lte": opLte,
	"$in": opIn, "$nin": opNin, "$exist": opExist, "$regex": opRegex,
}

func (k opKind) String() string {
	for n, v := range opNames {
		if v == k {
			return n
		}
	}
	return "?"
}

// group is an AND (or OR) of nodes.
type group struct {
	or    bool
	nodes []node
}

// node is a group or a condition.
type node interface {
	eval(root any, ex *explainer) bool
}

// cond is one operator applied to the values a path resolves to.
type cond struct {
	path  []string // segments; "$" = any element
	label string   // the path as written, for explanations
	op    opKind
	val   any // the operand (decoded with UseNumber)
	num   float64
	isNum bool
	set   []any
	re    *regexp.Regexp
	want  bool // $exist
}

type compiler struct {
	clauses int
}

func (cc *compiler) compileTop(scope string, raw json.RawMessage, headers bool) (*group, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not valid JSON: %v", ErrFilter, scope, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: must be a JSON object, not %s", ErrFilter, scope, jsonKind(v))
	}
	if len(obj) == 0 {
		return nil, nil
	}
	g, err := cc.object(scope, nil, obj, headers, 0)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// object compiles a filter object found at path prefix into an AND group.
func (cc *compiler) object(scope string, prefix []string, obj map[string]any, headers bool, depth int) (*group, error) {
	if depth > MaxFilterDepth {
		return nil, fmt.Errorf("%w: %s: nested deeper than %d levels", ErrFilter, scope, MaxFilterDepth)
	}
	g := &group{}
	for _, k := range sortedKeys(obj) {
		v := obj[k]
		where := scope
		if len(prefix) > 0 {
			where = fmt.Sprintf("%s: %q", scope, strings.Join(prefix, "."))
		}
		switch {
		case k == "$or" || k == "$and":
			arr, ok := v.([]any)
			if !ok || len(arr) == 0 {
				return nil, fmt.Errorf("%w: %s: %s takes a non-empty array of filter objects", ErrFilter, where, k)
			}
			sub := &group{or: k == "$or"}
			for i, el := range arr {
				o, ok := el.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%w: %s: %s[%d] must be a filter object, not %s", ErrFilter, where, k, i, jsonKind(el))
				}
				var n node
				var err error
				if len(prefix) > 0 {
					// Under a field, a branch may hold operators on that field: {"amount": {"$or": [{"$lt": 1}, {"$gt": 9}]}}.
					n, err = cc.field(scope, prefix, o, headers, depth+1)
				} else {
					n, err = cc.object(scope, nil, o, headers, depth+1)
				}
				if err != nil {
					return nil, err
				}
				sub.nodes = append(sub.nodes, n)
			}
			g.nodes = append(g.nodes, sub)
		case strings.HasPrefix(k, "$") && k != "$" && !strings.HasPrefix(k, "$."):
			if _, ok := opNames[k]; ok {
				return nil, fmt.Errorf("%w: %s: operator %q needs a field: {\"field\": {%q: ...}}", ErrFilter, where, k, k)
			}
			return nil, fmt.Errorf("%w: %s: unknown operator %q (known: $eq $neq $gt $gte $lt $lte $in $nin $exist $regex $or $and)", ErrFilter, where, k)
		default:
			path, err := splitPath(scope, k, headers)
			if err != nil {
				return nil, err
			}
			full := append(append([]string(nil), prefix...), path...)
			if len(full) > MaxFilterPathLen {
				return nil, fmt.Errorf("%w: %s: path %q has more than %d segments", ErrFilter, scope, strings.Join(full, "."), MaxFilterPathLen)
			}
			n, err := cc.field(scope, full, v, headers, depth+1)
			if err != nil {
				return nil, err
			}
			g.nodes = append(g.nodes, n)
		}
	}
	return g, nil
}

// field compiles the value given for a field path: an operator object, a nested filter object, or a
// value to equal.
func (cc *compiler) field(scope string, path []string, v any, headers bool, depth int) (node, error) {
	label := strings.Join(path, ".")
	obj, isObj := v.(map[string]any)
	if !isObj || len(obj) == 0 {
		return cc.cond(scope, path, label, "$eq", v)
	}
	ops, fields := 0, 0
	for k := range obj {
		if strings.HasPrefix(k, "$") && k != "$" && !strings.HasPrefix(k, "$.") {
			ops++
		} else {
			fields++
		}
	}
	if ops > 0 && fields > 0 {
		return nil, fmt.Errorf("%w: %s: %q mixes operators and field names in one object", ErrFilter, scope, label)
	}
	if fields > 0 {
		if headers {
			return nil, fmt.Errorf("%w: %s: header %q cannot hold nested fields", ErrFilter, scope, label)
		}
		return cc.object(scope, path, obj, headers, depth)
	}
	g := &group{}
	for _, k := range sortedKeys(obj) {
		if k == "$or" || k == "$and" {
			o := map[string]any{k: obj[k]}
			sub, err := cc.object(scope, path, o, headers, depth+1)
			if err != nil {
				return nil, err
			}
			g.nodes = append(g.nodes, sub)
			continue
		}
		n, err := cc.cond(scope, path, label, k, obj[k])
		if err != nil {
			return nil, err
		}
		g.nodes = append(g.nodes, n)
	}
	if len(g.nodes) == 1 {
		return g.nodes[0], nil
	}
	return g, nil
}

func (cc *compiler) cond(scope string, path []string, label, opName string, v any) (node, error) {
	cc.clauses++
	if cc.clauses > MaxFilterClauses {
		return nil, fmt.Errorf("%w: more than %d conditions", ErrFilter, MaxFilterClauses)
	}
	op, ok := opNames[opName]
	where := fmt.Sprintf("%s: %q", scope, label)
	if !ok {
		return nil, fmt.Errorf("%w: %s: unknown operator %q (known: $eq $neq $gt $gte $lt $lte $in $nin $exist $regex $or $and)", ErrFilter, where, opName)
	}
	c := &cond{path: path, label: label, op: op, val: v}
	switch op {
	case opGt, opGte, opLt, opLte:
		switch x := v.(type) {
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %s is out of range", ErrFilter, where, opName, x)
			}
			c.num, c.isNum = f, true
		case string:
		default:
			return nil, fmt.Errorf("%w: %s: %s takes a number or a string, not %s", ErrFilter, where, opName, jsonKind(v))
		}
	case opIn, opNin:
		arr, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: %s takes an array, not %s", ErrFilter, where, opName, jsonKind(v))
		}
		if len(arr) > MaxFilterClauses {
			return nil, fmt.Errorf("%w: %s: %s has more than %d values", ErrFilter, where, opName, MaxFilterClauses)
		}
		c.set = arr
	case opExist:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%w: %s: $exist takes true or false, not %s", ErrFilter, where, jsonKind(v))
		}
		c.want = b
	case opRegex:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s: $regex takes a string, not %s", ErrFilter, where, jsonKind(v))
		}
		if len(s) > MaxFilterRegexLen {
			return nil, fmt.Errorf("%w: %s: $regex pattern is longer than %d bytes", ErrFilter, where, MaxFilterRegexLen)
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: $regex: %v", ErrFilter, where, err)
		}
		c.re = re
	}
	return c, nil
}

func splitPath(scope, k string, headers bool) ([]string, error) {
	if k == "" {
		return nil, fmt.Errorf("%w: %s: empty field name", ErrFilter, scope)
	}
	if headers {
		return []string{http.CanonicalHeaderKey(k)}, nil
	}
	parts := strings.Split(k, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%w: %s: path %q has an empty segment", ErrFilter, scope, k)
		}
	}
	if parts[len(parts)-1] == "$" {
		return nil, fmt.Errorf("%w: %s: path %q ends with $: name a field after it, or filter the array itself", ErrFilter, scope, k)
	}
	return parts, nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeValue decodes one JSON value with numbers kept as json.Number (exact until compared).
func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// ---- evaluation ----

// FilterDoc is one event as filters see it: its payload, parsed at most once however many
// subscriptions are evaluated against it, and its headers.
type FilterDoc struct {
	data    []byte
	headers map[string]string

	parsed  bool
	body    any
	hdr     map[string]any
	hdrDone bool
}

// NewFilterDoc wraps an event's data and headers. Data that is not JSON is read as a form
// (application/x-www-form-urlencoded, per the Content-Type header) when it is one; otherwise body
// clauses see no fields.
func NewFilterDoc(data []byte, headers map[string]string) *FilterDoc {
	return &FilterDoc{data: data, headers: headers}
}

func (d *FilterDoc) bodyValue() any {
	if !d.parsed {
		d.parsed = true
		if v, err := decodeValue(d.data); err == nil {
			d.body = v
		} else if isForm(d.headers) {
			if vals, err := url.ParseQuery(string(d.data)); err == nil {
				m := make(map[string]any, len(vals))
				for k, vs := range vals {
					if len(vs) == 1 {
						m[k] = vs[0]
					} else {
						arr := make([]any, len(vs))
						for i, s := range vs {
							arr[i] = s
						}
						m[k] = arr
					}
				}
				d.body = m
			}
		}
	}
	return d.body
}

func isForm(h map[string]string) bool {
	for k, v := range h {
		if strings.EqualFold(k, "Content-Type") {
			mt, _, _ := mime.ParseMediaType(v)
			return mt == "application/x-www-form-urlencoded"
		}
	}
	return false
}

func (d *FilterDoc) headerValue() any {
	if !d.hdrDone {
		d.hdrDone = true
		d.hdr = make(map[string]any, len(d.headers))
		for k, v := range d.headers {
			d.hdr[http.CanonicalHeaderKey(k)] = v
		}
	}
	return d.hdr
}

// Match reports whether the event matches every clause.
func (c *CompiledFilter) Match(d *FilterDoc) bool {
	if c == nil {
		return true
	}
	if c.headers != nil && !c.headers.eval(d.headerValue(), nil) {
		return false
	}
	return c.body == nil || c.body.eval(d.bodyValue(), nil)
}

// Explain is Match that also says which clause failed first (empty when it matches).
func (c *CompiledFilter) Explain(d *FilterDoc) (bool, string) {
	if c == nil {
		return true, ""
	}
	if c.headers != nil {
		ex := &explainer{scope: "headers"}
		if !c.headers.eval(d.headerValue(), ex) {
			return false, ex.msg
		}
	}
	if c.body != nil {
		ex := &explainer{scope: "body"}
		if !c.body.eval(d.bodyValue(), ex) {
			if d.bodyValue() == nil {
				ex.msg += " (the payload is neither JSON nor a form)"
			}
			return false, ex.msg
		}
	}
	return true, ""
}

// explainer records the first failing clause; nil on the hot path.
type explainer struct {
	scope string
	msg   string
}

func (ex *explainer) fail(format string, args ...any) {
	if ex != nil && ex.msg == "" {
		ex.msg = ex.scope + ": " + fmt.Sprintf(format, args...)
	}
}

func (g *group) eval(root any, ex *explainer) bool {
	if g.or {
		for _, n := range g.nodes {
			if n.eval(root, nil) {
				return true
			}
		}
		if ex != nil {
			parts := make([]string, 0, len(g.nodes))
			for _, n := range g.nodes {
				sub := &explainer{scope: ex.scope}
				n.eval(root, sub)
				parts = append(parts, strings.TrimPrefix(sub.msg, ex.scope+": "))
			}
			ex.fail("no $or branch matched: [%s]", strings.Join(parts, "; "))
		}
		return false
	}
	for _, n := range g.nodes {
		if !n.eval(root, ex) {
			return false
		}
	}
	return true
}

func (c *cond) eval(root any, ex *explainer) bool {
	var buf [4]any
	vals := resolve(root, c.path, buf[:0])
	var ok bool
	switch c.op {
	case opExist:
		ok = (len(vals) > 0) == c.want
	case opNeq:
		ok = !anyMatch(vals, func(v any) bool { return valueEqual(v, c.val) })
	case opNin:
		ok = !anyMatch(vals, c.inSet)
	default:
		ok = anyMatch(vals, c.test)
	}
	if !ok && ex != nil {
		got := "missing"
		if len(vals) > 0 {
			got = "value " + preview(vals[0])
			if len(vals) > 1 {
				got = fmt.Sprintf("%d values, first %s", len(vals), preview(vals[0]))
			}
		}
		ex.fail("%q %s %s failed (%s)", c.label, c.op, preview(c.operand()), got)
	}
	return ok
}

func (c *cond) operand() any {
	if c.op == opExist {
		return c.want
	}
	return c.val
}

func anyMatch(vals []any, fn func(any) bool) bool {
	for _, v := range vals {
		if fn(v) {
			return true
		}
		// A scalar test on an array value matches when an element does (Convoy's "array contains").
		if arr, ok := v.([]any); ok {
			for _, el := range arr {
				if fn(el) {
					return true
				}
			}
		}
	}
	return false
}

func (c *cond) inSet(v any) bool {
	for _, s := range c.set {
		if valueEqual(v, s) {
			return true
		}
	}
	return false
}

func (c *cond) test(v any) bool {
	switch c.op {
	case opEq:
		return valueEqual(v, c.val)
	case opIn:
		return c.inSet(v)
	case opRegex:
		s, ok := v.(string)
		return ok && c.re.MatchString(s)
	case opGt, opGte, opLt, opLte:
		var cmp int
		if c.isNum {
			n, ok := v.(json.Number)
			if !ok {
				return false
			}
			f, err := n.Float64()
			if err != nil {
				return false
			}
			switch {
			case f < c.num:
				cmp = -1
			case f > c.num:
				cmp = 1
			}
		} else {
			s, ok := v.(string)
			if !ok {
				return false
			}
			cmp = strings.Compare(s, c.val.(string))
		}
		switch c.op {
		case opGt:
			return cmp > 0
		case opGte:
			return cmp >= 0
		case opLt:
			return cmp < 0
		default:
			return cmp <= 0
		}
	}
	return false
}

// resolve appends to out every value path reaches from v. Arrays are traversed: "$" or no index
// means every element, a number means that element.
func resolve(v any, path []string, out []any) []any {
	if len(path) == 0 {
		return append(out, v)
	}
	seg := path[0]
	switch x := v.(type) {
	case map[string]any:
		if child, ok := x[seg]; ok {
			return resolve(child, path[1:], out)
		}
	case []any:
		if seg == "$" {
			for _, el := range x {
				out = resolve(el, path[1:], out)
			}
			return out
		}
		if i, err := strconv.Atoi(seg); err == nil {
			if i >= 0 && i < len(x) {
				return resolve(x[i], path[1:], out)
			}
			return out
		}
		for _, el := range x {
			if _, isObj := el.(map[string]any); isObj {
				out = resolve(el, path, out)
			}
		}
	}
	return out
}

// valueEqual is JSON equality with numbers compared by value (1 == 1.0).
func valueEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, e1 := x.Float64()
		fy, e2 := y.Float64()
		return e1 == nil && e2 == nil && fx == fy
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !valueEqual(xv, yv) {
				return false
			}
		}
		return true
	}
	return false
}

func preview(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 64 {
		cut := 61
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return string(b[:cut]) + "..."
	}
	return string(b)
}
