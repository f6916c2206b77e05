package netbox

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
)

// replay serves the answers a live NetBox 4.7.3 gave for the default
// backbone pushed as "nbrt" (testdata/nbrt, recorded with curl), after
// edit has changed them.
func replay(t *testing.T, edit func(path string, objs []map[string]any) []map[string]any) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tag") != "bb-nbrt" {
			t.Errorf("read without the backbone's tag: %s", r.URL)
		}
		name := strings.ReplaceAll(strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/"), "/"), "/", "_") + ".json"
		data, err := os.ReadFile(filepath.Join("testdata", "nbrt", name))
		if err != nil {
			w.WriteHeader(404)
			return
		}
		var page struct {
			Count   int              `json:"count"`
			Next    *string          `json:"next"`
			Results []map[string]any `json:"results"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			page.Results = edit(r.URL.Path, page.Results)
			page.Count = len(page.Results)
		}
		json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, "0123456789abcdef0123456789abcdef01234567")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func planOf(t *testing.T, in *intent.Intent) *plan.Plan {
	t.Helper()
	data, err := intent.Format(in)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := intent.Load(data, "pulled")
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	p, ps := plan.Build(doc)
	if p == nil {
		t.Fatalf("%v\n%s", ps.Err(), data)
	}
	return p
}

// What NetBox answered plans exactly as the intent that was pushed.
func TestPullRecorded(t *testing.T) {
	in, err := Pull(context.Background(), replay(t, nil), "nbrt")
	if err != nil {
		t.Fatal(err)
	}
	want := intenttest.Plan(t, intenttest.EditDefault(t, "name: default", "name: nbrt"), "default")
	a, _ := json.MarshalIndent(want, "", " ")
	b, _ := json.MarshalIndent(planOf(t, in), "", " ")
	if d := cmp.Diff(string(a), string(b)); d != "" {
		t.Errorf("pulled plan differs (-pushed +pulled):\n%s", d)
	}
}

// Broken data in NetBox: every problem at once, each naming the object.
func TestPullProblems(t *testing.T) {
	c := replay(t, func(path string, objs []map[string]any) []map[string]any {
		switch {
		case strings.Contains(path, "ip-addresses"):
			// pe201 loses its loopbacks; pe101 gets a second IPv4 one.
			var out []map[string]any
			for _, o := range objs {
				a := o["address"].(string)
				if a == "10.10.0.1/32" || a == "fd53:ba85:6bf9:10::1/128" {
					continue
				}
				out = append(out, o)
				if a == "10.10.0.2/32" {
					dup := map[string]any{}
					for k, v := range o {
						dup[k] = v
					}
					dup["id"], dup["address"] = float64(99999), "10.10.0.99/32"
					out = append(out, dup)
				}
			}
			return out
		case strings.Contains(path, "tunnel-terminations"):
			// pe202-pe102 keeps one termination.
			for i, o := range objs {
				if tun := o["tunnel"].(map[string]any); tun["name"] == "nbrt/pe202-pe102" {
					return append(objs[:i], objs[i+1:]...)
				}
			}
		}
		return objs
	})
	_, err := Pull(context.Background(), c, "nbrt")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`virtual machine "pe201" (id `,
		`has no loopback address (an IP address with role loopback on its interface loopback0)`,
		`VM interface "loopback0" (id `,
		`two IPv4 loopback addresses (10.10.0.2 and 10.10.0.99): keep one`,
		`tunnel "nbrt/pe202-pe102" (id `,
		`has 1 terminations on backbone routers, a link needs 2`,
		`http://netbox.test/api/`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !strings.Contains(err.Error(), "3 problem(s)") {
		t.Errorf("want 3 problems:\n%v", err)
	}
}
