package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Client calls the REST API with one key.
type Client struct {
	Base string
	Key  string
	HTTP *http.Client
}

var apiTransport = &http.Transport{MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second}

// NewClient returns a client for base (e.g. http://127.0.0.1:5005) with key.
func NewClient(base, key string) *Client {
	return &Client{Base: base, Key: key, HTTP: &http.Client{Timeout: 60 * time.Second, Transport: apiTransport}}
}

// APIError is a non-2xx answer.
type APIError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// Do sends in as JSON (nil for no body) and decodes the envelope's data into out (may be nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status  bool            `json:"status"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return &APIError{method, path, resp.StatusCode, string(raw)}
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{method, path, resp.StatusCode, env.Message}
	}
	if out != nil && len(env.Data) > 0 {
		return json.Unmarshal(env.Data, out)
	}
	return nil
}

// ListProjects lists the projects the key sees.
func (c *Client) ListProjects(ctx context.Context) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := c.Do(ctx, http.MethodGet, "/api/v1/projects", nil, &out)
	return out, err
}

// Project is a created project and a client holding its own key.
type Project struct {
	ID  string
	API *Client
}

// CreateProject creates an outgoing project with the root client and returns a client with its key.
func (c *Client) CreateProject(ctx context.Context, name string) (*Project, error) {
	var out struct {
		UID    string `json:"uid"`
		APIKey struct {
			Key string `json:"key"`
		} `json:"api_key"`
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/projects", map[string]any{"name": name, "type": "outgoing"}, &out); err != nil {
		return nil, err
	}
	return &Project{ID: out.UID, API: NewClient(c.Base, out.APIKey.Key)}, nil
}

// Endpoint is the body of an endpoint create; zero fields are omitted.
type Endpoint struct {
	URL         string    `json:"url"`
	Name        string    `json:"name,omitempty"`
	OwnerID     string    `json:"owner_id,omitempty"`
	HTTPTimeout int       `json:"http_timeout,omitempty"` // seconds
	Status      string    `json:"status,omitempty"`       // "active" (default) or "paused"
	Strategy    *Strategy `json:"strategy,omitempty"`
}

// Strategy is an endpoint retry strategy: Duration in seconds, RetryCount retries after the first try.
type Strategy struct {
	Type       string `json:"type"`
	Duration   int    `json:"duration"`
	RetryCount int    `json:"retry_count"`
}

func (p *Project) path(s string) string { return "/api/v1/projects/" + p.ID + s }

// CreateEndpoint creates an endpoint and returns its id.
func (p *Project) CreateEndpoint(ctx context.Context, e Endpoint) (string, error) {
	var out struct {
		UID string `json:"uid"`
	}
	err := p.API.Do(ctx, http.MethodPost, p.path("/endpoints"), e, &out)
	return out.UID, err
}

// Subscribe creates a subscription of endpointID to eventTypes.
func (p *Project) Subscribe(ctx context.Context, endpointID string, eventTypes ...string) (string, error) {
	var out struct {
		UID string `json:"uid"`
	}
	in := map[string]any{"name": "bench-" + endpointID, "type": "api", "endpoint_id": endpointID,
		"filter_config": map[string]any{"event_types": eventTypes}}
	err := p.API.Do(ctx, http.MethodPost, p.path("/subscriptions"), in, &out)
	return out.UID, err
}

// Activate makes an endpoint active (its pending deliveries are requeued).
func (p *Project) Activate(ctx context.Context, endpointID string) error {
	return p.API.Do(ctx, http.MethodPost, p.path("/endpoints/"+endpointID+"/activate"), nil, nil)
}

// Pause pauses an endpoint.
func (p *Project) Pause(ctx context.Context, endpointID string) error {
	return p.API.Do(ctx, http.MethodPut, p.path("/endpoints/"+endpointID+"/pause"), nil, nil)
}

// EventsURL is the URL of a publish route: "" (one endpoint), "/fanout" or "/broadcast".
func (p *Project) EventsURL(route string) string { return p.API.Base + p.path("/events"+route) }

// Parallel runs fn(0..n-1) on conc goroutines and returns the first error (remaining calls are skipped).
func Parallel(n, conc int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return first
}
