// Package netbox talks to a NetBox server's REST API: authentication (v1
// and v2 tokens), pagination, retries on server errors (never on client
// errors), and errors that name the object, the URL and NetBox's own
// answer.
package netbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is a NetBox API client.
type Client struct {
	// URL is the server's base URL (http://127.0.0.1:8765).
	URL   string
	Token string
	HTTP  *http.Client
	// Retries is how often a request that failed with a server error (5xx)
	// or a timeout is tried again; 4xx answers are never retried.
	Retries int
	// Backoff is the pause before the first retry (doubled each time).
	Backoff time.Duration
	// Requests counts the HTTP requests made (for --timings and tests).
	Requests int
}

// New returns a client with a 30 s request timeout and 3 retries.
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("netbox: URL %q is not an http(s) URL (e.g. http://netbox.example.net or set NETBOX_URL)", baseURL)
	}
	if token == "" {
		return nil, errors.New("netbox: no API token: pass --token or set NETBOX_TOKEN (NetBox: Admin > API tokens)")
	}
	return &Client{
		URL: strings.TrimSuffix(u.String(), "/"), Token: token,
		HTTP:    &http.Client{Timeout: 30 * time.Second},
		Retries: 3, Backoff: 500 * time.Millisecond,
	}, nil
}

// APIError is an answer NetBox gave with an error status.
type APIError struct {
	Method string
	URL    string
	Status int
	// Body is NetBox's answer (for 400: {"field": ["message"]}).
	Body string
}

func (e *APIError) Error() string {
	hint := ""
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint = ": check the token (NETBOX_TOKEN) and its permissions (write enabled for push)"
	case http.StatusNotFound:
		hint = ": not found (is this a NetBox 4.x API URL?)"
	}
	body := strings.TrimSpace(e.Body)
	switch {
	case strings.HasPrefix(body, "<"):
		body = "(an HTML page, not an API answer)"
	case len(body) > 2000:
		body = body[:2000] + "..."
	}
	return fmt.Sprintf("%s %s: %d %s: %s%s", e.Method, e.URL, e.Status, http.StatusText(e.Status), body, hint)
}

// auth is the Authorization header: v2 tokens (nbt_<key>.<secret>) are
// Bearer tokens, v1 tokens (40 hex characters) use the Token scheme.
func (c *Client) auth() string {
	if strings.HasPrefix(c.Token, "nbt_") {
		return "Bearer " + c.Token
	}
	return "Token " + c.Token
}

// Do sends one request (retrying server errors and timeouts) and decodes
// a JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := c.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	wait := c.Backoff
	for attempt := 0; ; attempt++ {
		err := c.once(ctx, method, u, payload, out)
		if err == nil || attempt >= c.Retries || !retryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (c *Client) once(ctx context.Context, method, u string, payload []byte, out any) error {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.auth())
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.Requests++
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode >= 300 {
		return &APIError{Method: method, URL: u, Status: resp.StatusCode, Body: string(data)}
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected (%v): %.200s", method, u, err, data)
	}
	return nil
}

// retryable: server errors, timeouts and refused or reset connections
// are worth another try; a 4xx answer says the request itself is wrong.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "connection reset")
}

// page is one page of a list answer.
type page struct {
	Count   int               `json:"count"`
	Next    *string           `json:"next"`
	Results []json.RawMessage `json:"results"`
}

// List fetches every object of a list endpoint matching query, following
// the pages (1000 objects a page).
func (c *Client) List(ctx context.Context, path string, query url.Values) ([]json.RawMessage, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("limit", "1000")
	var all []json.RawMessage
	for offset := 0; ; {
		q.Set("offset", fmt.Sprint(offset))
		var p page
		if err := c.Do(ctx, http.MethodGet, path, q, nil, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Results...)
		offset += len(p.Results)
		if p.Next == nil || len(p.Results) == 0 {
			if len(all) != p.Count {
				return nil, fmt.Errorf("GET %s: NetBox said %d objects and gave %d", path, p.Count, len(all))
			}
			return all, nil
		}
	}
}

// Status is /api/status/: the server's versions.
type Status struct {
	NetBox string `json:"netbox-version"`
	Django string `json:"django-version"`
	Python string `json:"python-version"`
}

// Status reads the server's status (and checks the token).
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.Do(ctx, http.MethodGet, "/api/status/", nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
