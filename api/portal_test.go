package api

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// registeredRoutes reads every `s.mux.HandleFunc(pattern, …)` in the package's sources and evaluates
// the pattern, so a route added anywhere is walked by the portal test without anyone listing it.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	const projectPath = "/api/v1/projects/{projectID}" // the `p` every route file builds on
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		var eval func(e ast.Expr) (string, bool)
		eval = func(e ast.Expr) (string, bool) {
			switch x := e.(type) {
			case *ast.BasicLit:
				if x.Kind != token.STRING {
					return "", false
				}
				s, err := strconv.Unquote(x.Value)
				return s, err == nil
			case *ast.Ident:
				if x.Name == "p" {
					return projectPath, true
				}
			case *ast.BinaryExpr:
				if x.Op == token.ADD {
					a, ok1 := eval(x.X)
					b, ok2 := eval(x.Y)
					return a + b, ok1 && ok2
				}
			}
			return "", false
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "HandleFunc" || len(call.Args) == 0 {
				return true
			}
			pat, ok := eval(call.Args[0])
			if !ok {
				t.Fatalf("%s: cannot evaluate route pattern %s: teach registeredRoutes", fset.Position(call.Pos()), src[call.Args[0].Pos()-1:call.Args[0].End()-1])
			}
			out = append(out, pat)
			return true
		})
	}
	sort.Strings(out)
	return out
}

// portalWorld is one project with owner a's endpoints (epA1, epA2) and owner b's (epB), events and
// deliveries to each, a failed delivery with an attempt on each side, and a portal link per owner.
type portalWorld struct {
	pid, key                string
	epA1, epA2, epB         string
	evA, evB, evBoth        string
	dA, dB, dBothA, dBothB  string
	attA, attB, subB, linkB string
	tokA, tokB, linkA       string
}

func setupPortal(e *env) portalWorld {
	t := e.t
	var w portalWorld
	r := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "portal"}, 201)
	w.pid, w.key = field(t, r.Data, "uid"), field(t, r.Data, "api_key", "key")
	p := "/projects/" + w.pid
	ep := func(owner string) string {
		return field(t, e.mustDo("POST", p+"/endpoints", w.key, map[string]any{"url": "http://127.0.0.1:9/" + owner, "owner_id": owner}, 201).Data, "uid")
	}
	w.epA1, w.epA2, w.epB = ep("a"), ep("a"), ep("b")
	e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": w.epA2, "filter_config": map[string]any{"event_types": []string{"both"}}}, 201)
	w.subB = field(t, e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": w.epB}, 201).Data, "uid")
	pub := func(path string, body map[string]any) string {
		body["data"] = map[string]any{"secret_of": body["event_type"]}
		return field(t, e.mustDo("POST", p+path, w.key, body, 201).Data, "uid")
	}
	w.evA = pub("/events", map[string]any{"endpoint_id": w.epA1, "event_type": "only.a"})
	w.evB = pub("/events", map[string]any{"endpoint_id": w.epB, "event_type": "only.b"})
	w.evBoth = pub("/events/broadcast", map[string]any{"event_type": "both"})
	w.dA, w.dB = deliveryOf(e, w.pid, w.key, w.evA, w.epA1), deliveryOf(e, w.pid, w.key, w.evB, w.epB)
	w.dBothA, w.dBothB = deliveryOf(e, w.pid, w.key, w.evBoth, w.epA2), deliveryOf(e, w.pid, w.key, w.evBoth, w.epB)
	// Fail dA and dB with one attempt each, as the dispatcher would record them.
	now := time.Now().UTC()
	w.attA, w.attB = model.NewID(now), model.NewID(now)
	res := raftstore.Results{}
	for _, x := range []struct{ did, eid, aid string }{{w.dA, w.epA1, w.attA}, {w.dB, w.epB, w.attB}} {
		res.Results = append(res.Results, raftstore.AttemptResult{ProjectID: w.pid, DeliveryID: x.did, Status: model.StatusFailed, At: now,
			Attempt: &model.Attempt{UID: x.aid, DeliveryID: x.did, ProjectID: w.pid, EndpointID: x.eid, Number: 1, StatusCode: 500,
				ResponseBody: "body of " + x.did, CreatedAt: now}})
	}
	cmd, _ := raftstore.NewCommand(raftstore.CmdResults, res, nil)
	if _, err := e.st.Propose(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	link := func(owner string) (string, string) {
		r := e.mustDo("POST", p+"/portal-links", w.key, map[string]any{"owner_id": owner, "name": "link " + owner}, 201)
		return field(t, r.Data, "token"), field(t, r.Data, "uid")
	}
	w.tokA, w.linkA = link("a")
	w.tokB, w.linkB = link("b")
	return w
}

func deliveryOf(e *env, pid, key, evid, eid string) string {
	var page struct {
		Content []struct {
			UID        string `json:"uid"`
			EndpointID string `json:"endpoint_id"`
		} `json:"content"`
	}
	json.Unmarshal(e.mustDo("GET", "/projects/"+pid+"/eventdeliveries?eventId="+evid, key, nil, 200).Data, &page)
	for _, d := range page.Content {
		if d.EndpointID == eid {
			return d.UID
		}
	}
	e.t.Fatalf("no delivery of event %s to endpoint %s", evid, eid)
	return ""
}

var pathParam = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// TestPortalTokenNeverReachesAnotherOwner walks every registered route with owner a's portal token
// against owner b's ids: routes outside the portal's set answer 403, scoped gets 404, and no answer
// carries any of owner b's ids or data.
func TestPortalTokenNeverReachesAnotherOwner(t *testing.T) {
	e := newEnv(t)
	w := setupPortal(e)
	other := field(t, e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "other"}, 201).Data, "uid")
	secretsOfB := []string{w.epB, w.evB, w.dB, w.dBothB, w.attB, w.subB, w.linkB, "only.b", "body of " + w.dB, "http://127.0.0.1:9/b"}
	// leak fails if an answer carries owner b's ids or data (an error message may echo the ids the
	// request itself named).
	leak := func(t *testing.T, what string, r reply) {
		t.Helper()
		for _, s := range secretsOfB {
			raw := string(r.Data)
			if !strings.Contains(what, s) {
				raw += r.Message
			}
			if strings.Contains(raw, s) {
				t.Fatalf("%s: answer carries owner b's %q: %s", what, s, raw)
			}
		}
	}
	params := map[string]string{
		"projectID": w.pid, "endpointID": w.epB, "eventID": w.evB, "deliveryID": w.dB, "attemptID": w.attB,
		"subscriptionID": w.subB, "linkID": w.linkB,
	}
	routes := registeredRoutes(t)
	seen := map[string]bool{}
	for _, pat := range routes {
		method, path, ok := strings.Cut(pat, " ")
		if !ok {
			continue // the /api/ catch-all: no handler behind it
		}
		seen[pat] = true
		hasID := false
		url := pathParam.ReplaceAllStringFunc(path, func(m string) string {
			name := m[1 : len(m)-1]
			if name != "projectID" {
				hasID = true
			}
			if v, ok := params[name]; ok {
				return v
			}
			return model.NewID(time.Now()) // a parameter this test does not know: any id of nobody's
		})
		url = strings.TrimPrefix(url, "/api/v1")
		t.Run(pat, func(t *testing.T) {
			var bodies []any = []any{nil}
			if method == "POST" || method == "PUT" {
				bodies = []any{map[string]any{}, map[string]any{"owner_id": "b", "url": "http://127.0.0.1:9/x", "endpoint_id": w.epB, "event_type": "x", "data": 1}}
			}
			queries := []string{"", "?endpointId=" + w.epB + "&ownerId=b&eventId=" + w.evB, "?ownerId=b", "?q=only.b", "?eventId=" + w.evB}
			for _, body := range bodies {
				for _, qs := range queries {
					before := e.st.AppliedIndex()
					r := e.do(method, url+qs, w.tokA, body)
					leak(t, method+" "+url+qs, r)
					switch {
					case !portalRoutes[pat]:
						if r.Code != 403 {
							t.Fatalf("%s %s%s = %d %q, want 403 (not a portal route)", method, url, qs, r.Code, r.Message)
						}
					case hasID:
						if r.Code != 404 {
							t.Fatalf("%s %s%s with owner b's ids = %d %q, want 404", method, url, qs, r.Code, r.Message)
						}
					case method == "GET":
						if r.Code != 200 && r.Code != 404 {
							t.Fatalf("%s %s%s = %d %q, want 200 or 404", method, url, qs, r.Code, r.Message)
						}
					}
					if r.Code >= 400 && e.st.AppliedIndex() != before {
						t.Fatalf("refused %s %s changed state", method, url)
					}
				}
			}
		})
	}
	for pat := range portalRoutes {
		if !seen[pat] {
			t.Errorf("portal route %q is not registered", pat)
		}
	}
	// Owner b's records are untouched by everything above (batch retry, replay, writes).
	var dB struct {
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
	}
	json.Unmarshal(e.mustDo("GET", "/projects/"+w.pid+"/eventdeliveries/"+w.dB, w.key, nil, 200).Data, &dB)
	if dB.Status != "failed" {
		t.Fatalf("owner b's failed delivery is now %q", dB.Status)
	}
	if got := field(t, e.mustDo("GET", "/projects/"+w.pid+"/endpoints/"+w.epB, w.key, nil, 200).Data, "status"); got != "active" {
		t.Fatalf("owner b's endpoint is %s", got)
	}
	var evB struct {
		Content []struct{ UID string } `json:"content"`
	}
	json.Unmarshal(e.mustDo("GET", "/projects/"+w.pid+"/eventdeliveries?eventId="+w.evB, w.key, nil, 200).Data, &evB)
	if len(evB.Content) != 1 {
		t.Fatalf("owner b's event has %d deliveries after the walk, want 1 (a replay leaked)", len(evB.Content))
	}
	// A portal token is confined to its project.
	if r := e.do("GET", "/projects/"+other+"/endpoints", w.tokA, nil); r.Code != 403 {
		t.Fatalf("portal token on another project = %d", r.Code)
	}
}

// TestPortalTokenManagesItsOwnersResources is the positive side: owner a sees and fixes what is
// theirs, and their new endpoints belong to them.
func TestPortalTokenManagesItsOwnersResources(t *testing.T) {
	e := newEnv(t)
	w := setupPortal(e)
	p := "/projects/" + w.pid
	ids := func(r reply) string { return string(r.Data) }

	sess := e.mustDo("GET", "/portal", w.tokA, nil, 200)
	if field(t, sess.Data, "link", "owner_id") != "a" || field(t, sess.Data, "project", "name") != "portal" {
		t.Fatalf("session: %s", sess.Data)
	}
	if r := e.do("GET", "/portal", w.key, nil); r.Code != 403 {
		t.Fatalf("/portal with a project key = %d", r.Code)
	}
	eps := ids(e.mustDo("GET", p+"/endpoints", w.tokA, nil, 200))
	if !strings.Contains(eps, w.epA1) || !strings.Contains(eps, w.epA2) || strings.Contains(eps, w.epB) {
		t.Fatalf("endpoints: %s", eps)
	}
	ds := ids(e.mustDo("GET", p+"/eventdeliveries", w.tokA, nil, 200))
	for _, d := range []string{w.dA, w.dBothA} {
		if !strings.Contains(ds, d) {
			t.Fatalf("deliveries miss %s: %s", d, ds)
		}
	}
	evs := ids(e.mustDo("GET", p+"/events", w.tokA, nil, 200))
	if !strings.Contains(evs, w.evA) || !strings.Contains(evs, w.evBoth) || strings.Contains(evs, w.evB) || strings.Contains(evs, w.epB) {
		t.Fatalf("events: %s", evs)
	}
	if got := ids(e.mustDo("GET", p+"/events/"+w.evBoth, w.tokA, nil, 200)); strings.Contains(got, w.epB) || !strings.Contains(got, w.epA2) {
		t.Fatalf("shared event not redacted: %s", got)
	}
	att := ids(e.mustDo("GET", p+"/eventdeliveries/"+w.dA+"/deliveryattempts", w.tokA, nil, 200))
	if !strings.Contains(att, "body of "+w.dA) {
		t.Fatalf("attempts: %s", att)
	}
	e.mustDo("GET", p+"/eventdeliveries/"+w.dA+"/deliveryattempts/"+w.attA, w.tokA, nil, 200)
	e.mustDo("PUT", p+"/eventdeliveries/"+w.dA+"/resend", w.tokA, nil, 202)
	e.mustDo("PUT", p+"/endpoints/"+w.epA1+"/pause", w.tokA, nil, 202)
	e.mustDo("POST", p+"/endpoints/"+w.epA1+"/activate", w.tokA, nil, 202)
	e.mustDo("PUT", p+"/endpoints/"+w.epA1+"/expire_secret", w.tokA, nil, 202)
	e.mustDo("PUT", p+"/endpoints/"+w.epA1, w.tokA, map[string]any{"name": "fixed"}, 202)
	e.mustDo("PUT", p+"/endpoints/"+w.epA1, w.tokA, map[string]any{"owner_id": "b"}, 403)
	r := e.mustDo("POST", p+"/endpoints", w.tokA, map[string]any{"url": "http://127.0.0.1:9/new"}, 201)
	if field(t, r.Data, "owner_id") != "a" {
		t.Fatalf("portal-created endpoint owner %s", field(t, r.Data, "owner_id"))
	}
	e.mustDo("POST", p+"/endpoints", w.tokA, map[string]any{"url": "http://127.0.0.1:9/new", "owner_id": "b"}, 403)
	r = e.mustDo("PUT", p+"/events/"+w.evBoth+"/replay", w.tokA, nil, 200)
	if field(t, r.Data, "uid") != w.evBoth {
		t.Fatalf("replay: %s", r.Data)
	}
	var dsB struct {
		Content []struct {
			EndpointID string `json:"endpoint_id"`
		} `json:"content"`
	}
	json.Unmarshal(e.mustDo("GET", p+"/eventdeliveries?eventId="+w.evBoth, w.key, nil, 200).Data, &dsB)
	if len(dsB.Content) != 3 {
		t.Fatalf("replay by owner a made %d deliveries of the shared event, want 3 (2 + one to a's endpoint)", len(dsB.Content))
	}
	// Batch retry of the failed set touches only a's: dA was resent above, so nothing is left.
	if got := field(t, e.mustDo("POST", p+"/eventdeliveries/batchretry?status=failed", w.tokA, nil, 200).Data, "num_success"); got != "0" {
		t.Fatalf("portal batch retry resent %s", got)
	}
	// Operators see owner filters the same way.
	ds = ids(e.mustDo("GET", p+"/eventdeliveries?ownerId=b", w.key, nil, 200))
	if !strings.Contains(ds, w.dB) || strings.Contains(ds, w.dA) {
		t.Fatalf("operator owner filter: %s", ds)
	}
	// Links list for the operator; revoking cuts the token off at once.
	links := ids(e.mustDo("GET", p+"/portal-links", w.key, nil, 200))
	if !strings.Contains(links, w.linkA) || strings.Contains(links, "hash") || strings.Contains(links, w.tokA) {
		t.Fatalf("links list: %s", links)
	}
	e.mustDo("PUT", p+"/portal-links/"+w.linkA+"/revoke", w.key, nil, 200)
	if r := e.do("GET", p+"/endpoints", w.tokA, nil); r.Code != 401 {
		t.Fatalf("revoked token = %d", r.Code)
	}
	// Expiry is checked against the server's clock.
	later := clock.NewFake(time.Now().Add(defaultPortalTTL + time.Minute))
	srv := httptest.NewServer(New(e.st, Config{Clock: later}).Handler())
	defer srv.Close()
	e2 := &env{t: t, st: e.st, srv: srv, base: srv.URL + "/api/v1"}
	if r := e2.do("GET", p+"/endpoints", w.tokB, nil); r.Code != 401 || !strings.Contains(r.Message, "expired") {
		t.Fatalf("expired token = %d %q", r.Code, r.Message)
	}
	e.mustDo("GET", p+"/endpoints", w.tokB, nil, 200)
}
