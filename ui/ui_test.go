package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesEmbeddedFilesWithPolicy(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/ui/", Handler("/ui/"))
	cases := []struct {
		method, path string
		code         int
		contains     string
	}{
		{"GET", "/ui/", 200, `<script src="app.js" defer></script>`},
		{"GET", "/ui/app.js", 200, "use strict"},
		{"GET", "/ui/app.css", 200, ":root"},
		{"HEAD", "/ui/", 200, ""},
		{"GET", "/ui/missing.js", 404, ""},
		{"POST", "/ui/", 405, ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.contains) {
			t.Errorf("%s %s = %d (%d bytes), want %d containing %q", c.method, c.path, rec.Code, rec.Body.Len(), c.code, c.contains)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); c.code != 405 && !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s %s: Content-Security-Policy %q", c.method, c.path, csp)
		}
	}
	// Nothing in the page loads from elsewhere, and no string becomes markup or code.
	checks := map[string][]string{
		"static/index.html": {"http:", "https:", "<script>", "style="},
		"static/app.css":    {"http:", "https:", "@import"},
		"static/app.js":     {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "fetch('http", `fetch("http`},
	}
	for f, bad := range checks {
		b, err := static.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range bad {
			if strings.Contains(string(b), x) {
				t.Errorf("%s contains %q", f, x)
			}
		}
	}
}
