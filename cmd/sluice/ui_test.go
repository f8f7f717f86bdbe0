package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The dashboard tests drive the real UI of the real binary in headless Chromium (Debian's chromium
// package; .ci/run installs it). Set SLUICE_UPDATE_SCREENSHOTS=1 (make screenshots) to write the
// screenshots they take to docs/screenshots.

const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds every browser step; waits poll the page until their condition holds or this passes.
const stepTimeout = 30 * time.Second

type browser struct {
	t   *testing.T
	ctx context.Context
	// mu guards jsErrors, appended by the tab's event loop.
	mu       sync.Mutex
	jsErrors []string
}

// newBrowser starts headless Chromium with a fresh profile and opens one tab, or skips the test when
// Chromium is not installed on this machine (CI installs it, and fails instead).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing in CI: .ci/run installs Debian's chromium package", chromiumPath)
		}
		t.Skipf("browser test skipped: %s not found (apt-get install chromium to run it)", chromiumPath)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancelAlloc)
	return openTab(t, alloc)
}

// openTab opens a new tab (with its own sessionStorage) in the browser of parent.
func openTab(t *testing.T, parent context.Context) *browser {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	t.Cleanup(cancel)
	b := &browser{t: t, ctx: ctx}
	// The first Run starts the browser (or the tab) and must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.mu.Lock()
			b.jsErrors = append(b.jsErrors, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.jsErrors {
			t.Errorf("JavaScript error in the page: %s", e)
		}
	})
	return b
}

func (b *browser) tab() *browser { return openTab(b.t, b.ctx) }

// do runs steps within stepTimeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage text: %s", what, err, b.pageText())
	}
}

// waitJS polls a JavaScript condition until it is truthy or stepTimeout passes. A poll does not
// survive a page load, so one cut short by a navigation is started again (within the same deadline).
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		left := time.Until(deadline)
		ctx, cancel := context.WithTimeout(b.ctx, left+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingTimeout(left), chromedp.WithPollingInterval(50*time.Millisecond)))
		cancel()
		if err == nil {
			return
		}
		// A navigation during the poll (the portal page drops its token from the URL on load)
		// ends it with "navigated" or, when the old document's context is gone before the poll
		// starts in it, "Cannot find context with specified id": poll again in the new document.
		if msg := err.Error(); !(strings.Contains(msg, "navigated") || strings.Contains(msg, "Cannot find context with specified id")) ||
			time.Now().After(deadline) {
			b.t.Fatalf("waiting for %s: %v\npage text: %s", what, err, b.pageText())
		}
	}
}

// waitText waits until the element matching css contains want.
func (b *browser) waitText(css, want string) {
	b.t.Helper()
	b.waitJS(fmt.Sprintf("%q in %s", want, css),
		fmt.Sprintf(`(() => { const el = document.querySelector(%q); return !!el && el.innerText.includes(%q); })()`, css, want))
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return v
}

// go navigates the single-page app to a route and waits for the main area to render it.
func (b *browser) goRoute(base, route string) {
	b.t.Helper()
	b.do("navigate to "+route, chromedp.Navigate(base+"/ui/#"+route))
}

// shot takes a full-page PNG, checks it is one, and writes it to docs/screenshots when asked.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil || cfg.Width < 300 || cfg.Height < 300 {
		b.t.Fatalf("screenshot %s is not a full page: %v %+v", name, err, cfg)
	}
	dir := b.t.TempDir()
	if os.Getenv("SLUICE_UPDATE_SCREENSHOTS") != "" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), img, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// sink is a local webhook receiver whose answer can be switched between failing and succeeding.
type sink struct {
	srv  *httptest.Server
	fail atomic.Bool
	got  chan string // event ids received
}

func newSink(t *testing.T, failing bool) *sink {
	s := &sink{got: make(chan string, 100)}
	s.fail.Store(failing)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if s.fail.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"database is down","retry":true}`)
			return
		}
		select {
		case s.got <- r.Header.Get("X-Sluice-Event-Id"):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"received":true}`)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestUIOperatorAndPortal logs in with a project key, finds a failed delivery by filter, reads its
// response body, resends it and sees the new successful attempt; creates an endpoint in the UI and
// sees a delivery arrive at a local sink; then opens a portal link and checks that another owner's
// data is absent from the pages and that its API URLs answer 403/404 to the portal token.
func TestUIOperatorAndPortal(t *testing.T) {
	b := newBrowser(t)
	httpAddr := freePort(t)
	p := startProc(t, t.TempDir(), httpAddr, freePort(t))
	base := "http://" + httpAddr

	orders, billing, fresh := newSink(t, true), newSink(t, false), newSink(t, false)
	var proj struct {
		UID    string `json:"uid"`
		APIKey struct {
			Key string `json:"key"`
		} `json:"api_key"`
	}
	if c := p.call("POST", "/projects", map[string]any{"name": "Acme Shop"}, &proj); c != 201 {
		t.Fatalf("create project: %d", c)
	}
	pp := "/projects/" + proj.UID
	var epOrders, epBilling struct{ UID string }
	p.call("POST", pp+"/endpoints", map[string]any{"url": orders.srv.URL + "/hooks", "name": "orders-service", "owner_id": "customer-1",
		"strategy": map[string]any{"type": "linear", "duration": 1, "retry_count": 0}}, &epOrders)
	p.call("POST", pp+"/endpoints", map[string]any{"url": billing.srv.URL + "/hooks", "name": "billing-service", "owner_id": "customer-2"}, &epBilling)
	for i := 0; i < 3; i++ {
		p.call("POST", pp+"/events", map[string]any{"endpoint_id": epBilling.UID, "event_type": "invoice.paid",
			"data": map[string]any{"invoice": fmt.Sprintf("in_%d", i), "amount": 4200 + i}}, nil)
	}
	var ev struct{ UID string }
	p.call("POST", pp+"/events", map[string]any{"endpoint_id": epOrders.UID, "event_type": "order.created",
		"data": map[string]any{"order": "ord_77", "total": 1999}}, &ev)
	var failedID, billingDelivery string
	waitFor(t, "the orders delivery to fail and billing to succeed", func() bool {
		var page struct {
			Content []struct{ UID, Status, EndpointID string } `json:"content"`
		}
		p.call("GET", pp+"/eventdeliveries?perPage=100", nil, &page)
		failed, ok := "", 0
		for _, d := range page.Content {
			switch {
			case d.Status == "failed":
				failed = d.UID
			case d.Status == "success":
				ok++
				billingDelivery = d.UID
			}
		}
		failedID = failed
		return failed != "" && ok == 3
	})

	// Log in with the project key: one project, so the overview opens.
	b.goRoute(base, "/")
	b.do("log in", chromedp.WaitVisible(chromedp.CSS("#key")), chromedp.SendKeys(chromedp.CSS("#key"), proj.APIKey.Key),
		chromedp.Click(chromedp.CSS(`#main form button[type="submit"]`)))
	b.waitText("#main h1", "Acme Shop")
	b.waitText(".chart", "success")
	b.waitText("#main", failedID)
	b.shot("overview")

	// Find the failed delivery by filter.
	b.do("open deliveries", chromedp.Click(chromedp.CSS(`#nav a[href$="/deliveries"]`)))
	b.waitText("#main h1", "Deliveries")
	b.do("filter failed", chromedp.SetValue(chromedp.CSS(`select[name="status"]`), "failed"),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
	b.waitJS("only the failed delivery listed", `location.hash.includes("status=failed") &&
		document.querySelectorAll("table.deliveries tbody tr").length === 1 &&
		document.querySelector("table.deliveries tbody").innerText.includes("failed")`)
	if txt := b.eval(`document.querySelector("table.deliveries tbody").innerText`); strings.Contains(txt, "success") || strings.Contains(txt, "invoice.paid") {
		t.Fatalf("failed filter lists other deliveries: %s", txt)
	}
	b.shot("deliveries")

	// Open it: the response body is there.
	b.do("open the delivery", chromedp.Click(chromedp.CSS(`table.deliveries tbody a[href*="/deliveries/"]`)))
	b.waitText(".resp-body", "database is down")
	b.waitText("#delivery-summary", "failed")
	b.waitText("#attempts", "HTTP 500")
	b.shot("delivery")

	// Resend against a now healthy receiver: a second, successful attempt appears.
	orders.fail.Store(false)
	b.do("resend", chromedp.Click(chromedp.CSS("#resend")))
	b.waitJS("the new successful attempt", `document.querySelectorAll("#attempts article").length === 2 &&
		document.querySelector("#attempts article").innerText.includes("HTTP 200") &&
		document.querySelector("#delivery-summary").innerText.includes("success")`)
	select {
	case id := <-orders.got:
		if id != ev.UID {
			t.Fatalf("sink got event %s, want %s", id, ev.UID)
		}
	case <-time.After(stepTimeout):
		t.Fatal("resent delivery did not reach the sink")
	}
	// The same page on a phone-sized screen.
	b.do("phone viewport", chromedp.EmulateViewport(390, 844))
	b.waitText(".resp-body", "received")
	b.shot("delivery-phone")
	b.do("desktop viewport", chromedp.EmulateViewport(1280, 900))

	// Create an endpoint in the UI and see a delivery arrive at its sink.
	b.do("open endpoints", chromedp.Click(chromedp.CSS(`#nav a[href$="/endpoints"]`)))
	b.waitText("table.endpoints", "billing-service")
	b.shot("endpoints")
	b.do("new endpoint", chromedp.Click(chromedp.CSS("#new-endpoint")), chromedp.WaitVisible(chromedp.CSS("#ep-url")),
		chromedp.SendKeys(chromedp.CSS("#ep-url"), fresh.srv.URL+"/webhooks"),
		chromedp.SendKeys(chromedp.CSS("#ep-name"), "fulfilment"),
		chromedp.SendKeys(chromedp.CSS("#ep-owner"), "customer-1"),
		chromedp.Click(chromedp.CSS("#create-endpoint")))
	b.waitText("#main", "Endpoint created")
	b.waitText("#secrets", "current")
	newEP := strings.TrimPrefix(b.eval(`location.hash.split("?")[0]`), "#/p/"+proj.UID+"/endpoints/")
	var fanout struct{ UID string }
	if c := p.call("POST", pp+"/events/fanout", map[string]any{"owner_id": "customer-1", "event_type": "order.shipped",
		"data": map[string]any{"order": "ord_77", "carrier": "DHL"}}, &fanout); c != 201 {
		t.Fatalf("publish to the new endpoint's owner: %d", c)
	}
	select {
	case id := <-fresh.got:
		if id != fanout.UID {
			t.Fatalf("new endpoint's sink got %s, want %s", id, fanout.UID)
		}
	case <-time.After(stepTimeout):
		t.Fatal("no delivery reached the endpoint created in the UI")
	}
	b.goRoute(base, "/p/"+proj.UID+"/deliveries?endpointId="+newEP)
	b.waitJS("the new endpoint's successful delivery", `(() => { const t = document.querySelector("table.deliveries tbody");
		return !!t && t.innerText.includes("order.shipped") && t.innerText.includes("success"); })()`)
	b.goRoute(base, "/p/"+proj.UID+"/endpoints/"+newEP)
	b.waitText(".chart", "success")
	b.waitJS("the endpoint's health", `document.querySelector("#main").innerText.includes("100% over 1 attempts")`)
	b.shot("endpoint")
	// Subscribe it to two types; the tester says the sample's type does not match before saving.
	b.do("fill a subscription", chromedp.SetValue(chromedp.CSS("#sub-types"), "order.created, order.shipped"),
		chromedp.SetValue(chromedp.CSS("#sub-filter-body"), `{"amount": {"$gte": 1000}}`),
		chromedp.Click(chromedp.CSS("#test-filter")))
	b.waitText("#filter-result", "does not match order.created, order.shipped")
	b.waitText("#filter-result", "Filter matches the sample event")
	b.do("add the subscription", chromedp.Click(chromedp.CSS("#add-subscription")))
	b.waitText("table.subscriptions", "order.created, order.shipped")

	// Events: search in payloads.
	b.goRoute(base, "/p/"+proj.UID+"/events?q=ord_77")
	b.waitJS("payload search results", `(() => { const t = document.querySelector("table.events tbody");
		return !!t && t.rows.length === 2 && !t.innerText.includes("invoice.paid"); })()`)
	b.shot("events")

	// Create a portal link for customer-1 in the UI.
	b.do("open portal links", chromedp.Click(chromedp.CSS(`#nav a[href$="/portal-links"]`)),
		chromedp.WaitVisible(chromedp.CSS("#link-owner")),
		chromedp.SendKeys(chromedp.CSS("#link-owner"), "customer-1"),
		chromedp.SendKeys(chromedp.CSS("#link-name"), "Customer One"),
		chromedp.Click(chromedp.CSS("#create-link")))
	b.waitJS("the link URL", `!!document.querySelector("#link-url")`)
	b.waitText("table.links", "customer-1")
	linkURL := b.eval(`document.querySelector("#link-url").value`)
	if !strings.HasPrefix(linkURL, base+"/ui/#portal=pt_") {
		t.Fatalf("portal link URL %q", linkURL)
	}
	b.shot("portal-links")

	// A deep link survives signing in: a fresh tab opens a delivery's URL, signs in, lands on it.
	d := b.tab()
	d.goRoute(base, "/p/"+proj.UID+"/deliveries/"+failedID)
	d.do("sign in from a deep link", chromedp.WaitVisible(chromedp.CSS("#key")), chromedp.SendKeys(chromedp.CSS("#key"), proj.APIKey.Key),
		chromedp.Click(chromedp.CSS(`#main form button[type="submit"]`)))
	d.waitText("#delivery-summary", "orders-service")

	// The root key sees every project; an incoming project lists its sources with their ingest URLs.
	var in struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "Inbound", "type": "incoming"}, &in)
	if c := p.call("POST", "/projects/"+in.UID+"/sources", map[string]any{"name": "shop", "provider": "shopify",
		"verifier": map[string]any{"hmac": map[string]any{"secret": "shpss_1"}}}, nil); c != 201 {
		t.Fatalf("create source: %d", c)
	}
	r := b.tab()
	r.goRoute(base, "/")
	r.do("sign in as root", chromedp.WaitVisible(chromedp.CSS("#key")), chromedp.SendKeys(chromedp.CSS("#key"), p.key),
		chromedp.Click(chromedp.CSS(`#main form button[type="submit"]`)))
	r.waitText("table.projects", "Inbound")
	r.waitText("table.projects", "Acme Shop")
	r.do("open the incoming project", chromedp.Click(chromedp.CSS(`table.projects a[href="#/p/`+in.UID+`"]`)))
	r.do("open its sources", chromedp.WaitVisible(chromedp.CSS(`#nav a[href$="/sources"]`)), chromedp.Click(chromedp.CSS(`#nav a[href$="/sources"]`)))
	r.waitText("table.sources", base+"/ingest/")
	r.waitText("table.sources", "shopify")

	// The customer opens the link in their own tab.
	c := b.tab()
	c.do("open the portal link", chromedp.Navigate(linkURL))
	c.waitText("#main h1", "Your webhooks")
	c.waitText("#who", "customer-1")
	if h := c.eval(`location.hash`); strings.Contains(h, "pt_") {
		t.Fatalf("the token stays in the URL: %s", h)
	}
	nav := c.eval(`document.querySelector("#nav").innerText`)
	if strings.Contains(nav, "Portal links") || strings.Contains(nav, "Subscriptions") || strings.Contains(nav, "All projects") {
		t.Fatalf("portal navigation offers operator sections: %q", nav)
	}
	c.shot("portal")
	pages := map[string]string{
		"/endpoints":  "table.endpoints",
		"/deliveries": "table.deliveries",
		"/events":     "table.events",
	}
	for route, table := range pages {
		c.goRoute(base, "/p/"+proj.UID+route)
		c.waitJS(route+" listed", fmt.Sprintf(`(() => { const t = document.querySelector(%q); return !!t && t.closest(".table-wrap").hidden === false; })()`, table))
		txt := c.pageText()
		for _, other := range []string{"billing-service", epBilling.UID, billingDelivery, "invoice.paid", "customer-2", "in_1"} {
			if strings.Contains(txt, other) {
				t.Fatalf("portal page %s shows another owner's %q:\n%s", route, other, txt)
			}
		}
		if !strings.Contains(txt, "orders-service") && !strings.Contains(txt, "order.created") {
			t.Fatalf("portal page %s misses customer-1's own data:\n%s", route, txt)
		}
	}
	c.goRoute(base, "/p/"+proj.UID+"/deliveries/"+failedID)
	c.waitText("#attempts", "HTTP 200")
	c.goRoute(base, "/p/"+proj.UID+"/deliveries/"+billingDelivery)
	c.waitText("#main", "not found")
	// The API refuses the portal token for another owner's data and for project-level routes.
	for path, want := range map[string]string{
		pp + "/eventdeliveries/" + billingDelivery:                       "404",
		pp + "/eventdeliveries/" + billingDelivery + "/deliveryattempts": "404",
		pp + "/endpoints/" + epBilling.UID:                               "404",
		pp + "/eventdeliveries?endpointId=" + epBilling.UID:              "200:0",
		pp + "/subscriptions":                                            "403",
		pp:                                                               "403",
		pp + "/portal-links":                                             "403",
		"/projects":                                                      "403",
	} {
		got := c.eval(fmt.Sprintf(`fetch("/api/v1%s", {headers: {Authorization: "Bearer " + sessionStorage.getItem("sluice.key")}})
			.then(async (r) => { const b = await r.json(); return r.status === 200 && b.data && b.data.content ? "200:" + b.data.content.length : String(r.status); })`, path))
		if got != want {
			t.Errorf("portal token GET %s = %s, want %s", path, got, want)
		}
	}
}
