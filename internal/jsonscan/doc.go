// Package jsonscan owns the allocation-free primitives behind the publish decoders' fast paths: one
// pass over a []byte, no reflection, no copies. It answers three questions about an input:
//
//   - where the next non-whitespace byte is (SkipSpace: RFC 8259 whitespace, as encoding/json);
//   - what a "simple" string holds (String): no backslash escape, no control character and valid
//     UTF-8, so its bytes are exactly what encoding/json would unmarshal it to. Anything else is
//     reported as not simple, never as an error, so the caller falls back to encoding/json;
//   - where a JSON value ends (Value): it validates the value exactly as json.Valid does (strict
//     numbers, literals, escapes, control characters refused in strings, invalid UTF-8 accepted in
//     strings, at most MaxDepth nested arrays and objects) without recursion, and returns its span.
//
// Object and StringObject build on them to read a flat object of known keys into spans, which the
// callers (api and ingest) turn into strings, maps and copied bytes only once the whole input is known
// to be in the canonical shape. Nothing here allocates; every result aliases the input.
package jsonscan
