package netbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testClient(t *testing.T, h http.HandlerFunc, token string) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff = time.Millisecond
	return c
}

func TestAuthHeader(t *testing.T) {
	for token, want := range map[string]string{
		"0123456789abcdef0123456789abcdef01234567":                  "Token 0123456789abcdef0123456789abcdef01234567",
		"nbt_abcdefghijkl.0123456789abcdef0123456789abcdef01234567": "Bearer nbt_abcdefghijkl.0123456789abcdef0123456789abcdef01234567",
	} {
		var got string
		c := testClient(t, func(w http.ResponseWriter, r *http.Request) {
			got = r.Header.Get("Authorization")
			fmt.Fprint(w, `{"netbox-version": "4.7.3"}`)
		}, token)
		if _, err := c.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Authorization %q, want %q", got, want)
		}
	}
}

// Server errors are retried, client errors never; the error carries
// NetBox's own answer.
func TestRetries(t *testing.T) {
	for _, c := range []struct {
		status   int
		body     string
		requests int
		want     string
	}{
		{503, "busy", 4, "503 Service Unavailable: busy"},
		{400, `{"name": ["virtual machine with this name already exists."]}`, 1, `400 Bad Request: {"name": ["virtual machine with this name already exists."]}`},
		{403, `{"detail":"Invalid v2 token"}`, 1, `403 Forbidden: {"detail":"Invalid v2 token"}: check the token`},
	} {
		n := 0
		cl := testClient(t, func(w http.ResponseWriter, r *http.Request) {
			n++
			w.WriteHeader(c.status)
			fmt.Fprint(w, c.body)
		}, "0123456789abcdef0123456789abcdef01234567")
		err := cl.Do(context.Background(), "POST", "/api/virtualization/virtual-machines/", nil, map[string]string{"name": "pe101"}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "POST http://127.0.0.1:") {
			t.Errorf("status %d: error %v, want %q", c.status, err, c.want)
		}
		if n != c.requests {
			t.Errorf("status %d: %d requests, want %d", c.status, n, c.requests)
		}
	}
	// A 502 then a 200: the retry succeeds.
	n := 0
	cl := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		n++
		if n == 1 {
			w.WriteHeader(502)
			return
		}
		fmt.Fprint(w, `{"netbox-version": "4.7.3"}`)
	}, "0123456789abcdef0123456789abcdef01234567")
	if s, err := cl.Status(context.Background()); err != nil || s.NetBox != "4.7.3" {
		t.Errorf("after a 502: %v %+v", err, s)
	}
}

// Pages are followed; a count that does not match what came is an error.
func TestListPages(t *testing.T) {
	const total = 2345
	cl := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		if r.URL.Query().Get("tag") != "backbone" {
			t.Errorf("filter lost: %s", r.URL)
		}
		var res []map[string]int
		for i := offset; i < min(offset+limit, total); i++ {
			res = append(res, map[string]int{"id": i + 1})
		}
		var next *string
		if offset+limit < total {
			s := fmt.Sprintf("http://x%s?limit=%d&offset=%d", r.URL.Path, limit, offset+limit)
			next = &s
		}
		json.NewEncoder(w).Encode(map[string]any{"count": total, "next": next, "results": res})
	}, "0123456789abcdef0123456789abcdef01234567")
	got, err := cl.List(context.Background(), "/api/ipam/ip-addresses/", map[string][]string{"tag": {"backbone"}})
	if err != nil || len(got) != total {
		t.Fatalf("List: %d objects, %v", len(got), err)
	}
	if cl.Requests != 3 {
		t.Errorf("%d requests for %d objects, want 3 pages of 1000", cl.Requests, total)
	}
	short := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"count": 3, "next": null, "results": [{"id": 1}]}`)
	}, "0123456789abcdef0123456789abcdef01234567")
	if _, err := short.List(context.Background(), "/api/dcim/sites/", nil); err == nil || !strings.Contains(err.Error(), "said 3 objects and gave 1") {
		t.Errorf("short list: %v", err)
	}
}

func TestNewChecks(t *testing.T) {
	if _, err := New("netbox.example.net", "t"); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Errorf("URL without scheme: %v", err)
	}
	if _, err := New("http://127.0.0.1:8765", ""); err == nil || !strings.Contains(err.Error(), "NETBOX_TOKEN") {
		t.Errorf("no token: %v", err)
	}
}

// Unreachable and slow servers: retried, then an error naming the URL.
func TestUnreachableAndSlow(t *testing.T) {
	c, err := New("http://127.0.0.1:1", "0123456789abcdef0123456789abcdef01234567")
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff = time.Millisecond
	_, err = c.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "GET http://127.0.0.1:1/api/status/") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("unreachable: %v", err)
	}
	if c.Requests != 4 {
		t.Errorf("unreachable: %d tries, want 4", c.Requests)
	}
	slow := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, `{"netbox-version": "4.7.3"}`)
	}, "0123456789abcdef0123456789abcdef01234567")
	slow.HTTP.Timeout = 50 * time.Millisecond
	slow.Retries = 1
	_, err = slow.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Client.Timeout exceeded") || slow.Requests != 2 {
		t.Errorf("slow: %v after %d requests", err, slow.Requests)
	}
}
