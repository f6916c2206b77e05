package netbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Kind is one NetBox object type backbone writes: its list endpoint and
// how a live object's natural key is read (name, slug, address...).
type Kind struct {
	Name string
	Path string
	// Key returns a live object's natural key (what Object.Key is for the
	// objects backbone wants).
	Key func(live map[string]any, ids *IDs) string
	// Filter narrows the read of live objects (e.g. tag=backbone; a
	// parameter with no values selects nothing); Check confirms the answer honours it (NetBox silently ignores a
	// filter it does not know).
	Filter url.Values
	Check  func(live map[string]any) bool
	// Of: this kind only updates objects of another kind, after what
	// they refer to exists (a virtual machine's primary IPs, which must
	// be addresses already on its interfaces).
	Of *Kind
	// Owned: every live object this kind's filter selects is the
	// backbone's (tagged with its tag), so one the backbone no longer
	// wants is deleted. Shared kinds (tags, custom fields, roles) are
	// never deleted.
	Owned bool
	// CreateOnly: an existing object is left as it is (never updated).
	CreateOnly bool
}

// Ref is a reference to another object backbone wants, resolved to its
// NetBox id when written.
type Ref struct {
	Kind *Kind
	Key  string
}

// Refs is a many-to-many reference (a list of ids when written).
type Refs []Ref

// Object is one object backbone wants in NetBox.
type Object struct {
	Kind   *Kind
	Key    string
	Fields map[string]any
}

// IDs maps each kind's natural keys to NetBox ids, and back.
type IDs struct {
	mu   sync.Mutex
	byID map[*Kind]map[int]string
	ids  map[*Kind]map[string]int
}

func newIDs() *IDs {
	return &IDs{byID: map[*Kind]map[int]string{}, ids: map[*Kind]map[string]int{}}
}

func (m *IDs) set(k *Kind, key string, id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids[k] == nil {
		m.ids[k], m.byID[k] = map[string]int{}, map[int]string{}
	}
	m.ids[k][key], m.byID[k][id] = id, key
}

// ID is the id of an object by its natural key (0: unknown).
func (m *IDs) ID(k *Kind, key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[k][key]
}

// KeyOf is the natural key of the object of kind k with this id.
func (m *IDs) KeyOf(k *Kind, id int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[k][id]
}

// Change is one write a sync makes (or would make).
type Change struct {
	Action string   `json:"action"` // create, update, delete
	Kind   string   `json:"kind"`
	Key    string   `json:"key"`
	ID     int      `json:"id,omitempty"`
	Fields []string `json:"fields,omitempty"`
}

// Sync makes NetBox hold the wanted objects: kinds in the order given
// (dependencies first), each kind read in one listing, compared field by
// field, and the missing ones created and the differing ones updated, in
// bulk. With dryRun nothing is written. It is idempotent, and safe to
// run again after a failure: objects are found by natural key, never
// created twice.
func Sync(ctx context.Context, c *Client, kinds []*Kind, want []Object, dryRun bool) ([]Change, *IDs, error) {
	ids := newIDs()
	var read []*Kind
	for _, k := range kinds {
		if k.Of == nil { // an Of kind is read as its own kind
			read = append(read, k)
		}
	}
	// References are compared by id, resolved through ids afterwards: the
	// kinds can be read all at once.
	lists, err := listKinds(ctx, c, read)
	if err != nil {
		return nil, nil, err
	}
	live := map[*Kind]map[string]map[string]any{}
	for _, k := range read {
		if live[k], err = keyed(k, lists[k], ids); err != nil {
			return nil, nil, err
		}
	}
	var changes []Change
	for _, k := range kinds {
		var creates, updates []Object
		var bodies, upd []map[string]any
		for _, o := range want {
			if o.Kind != k {
				continue
			}
			body, err := o.body(ids)
			if err != nil && !dryRun {
				return changes, ids, err
			}
			var cur map[string]any
			var id int
			if k.Of != nil {
				cur, id = live[k.Of][o.Key], ids.ID(k.Of, o.Key)
				if cur == nil {
					cur = map[string]any{}
				}
			} else if c, ok := live[k][o.Key]; ok {
				cur, id = c, int(c["id"].(float64))
			} else {
				creates, bodies = append(creates, o), append(bodies, body)
				changes = append(changes, Change{Action: "create", Kind: k.Name, Key: o.Key})
				continue
			}
			diff := differing(body, cur)
			if len(diff) == 0 || k.CreateOnly {
				continue
			}
			patch := map[string]any{"id": id}
			for _, f := range diff {
				patch[f] = body[f]
			}
			updates = append(updates, o)
			upd = append(upd, patch)
			changes = append(changes, Change{Action: "update", Kind: k.Name, Key: o.Key, ID: id, Fields: diff})
		}
		if dryRun {
			// Later kinds refer to these: give them stand-in ids.
			for i, o := range creates {
				ids.set(k, o.Key, -1-i)
			}
			continue
		}
		if len(creates) > 0 {
			var made []map[string]any
			if err := c.Do(ctx, http.MethodPost, k.Path, nil, bodies, &made); err != nil {
				return changes, ids, fmt.Errorf("creating %d %s (%s): %w", len(creates), k.Name, keys(creates), err)
			}
			for i, m := range made {
				ids.set(k, creates[i].Key, int(m["id"].(float64)))
			}
		}
		if len(upd) > 0 {
			if err := c.Do(ctx, http.MethodPatch, k.Path, nil, upd, nil); err != nil {
				return changes, ids, fmt.Errorf("updating %d %s (%s): %w", len(upd), k.Name, keys(updates), err)
			}
		}
	}
	// Deletes last, dependents first: what the intent no longer has.
	wanted := map[*Kind]map[string]bool{}
	for _, o := range want {
		if wanted[o.Kind] == nil {
			wanted[o.Kind] = map[string]bool{}
		}
		wanted[o.Kind][o.Key] = true
	}
	for i := len(kinds) - 1; i >= 0; i-- {
		k := kinds[i]
		if !k.Owned || k.Of != nil {
			continue
		}
		var gone []map[string]any
		var goneKeys []string
		for key, m := range live[k] {
			if !wanted[k][key] {
				gone = append(gone, map[string]any{"id": m["id"]})
				goneKeys = append(goneKeys, key)
			}
		}
		sort.Strings(goneKeys)
		for _, key := range goneKeys {
			changes = append(changes, Change{Action: "delete", Kind: k.Name, Key: key, ID: int(live[k][key]["id"].(float64))})
		}
		if dryRun || len(gone) == 0 {
			continue
		}
		if err := c.Do(ctx, http.MethodDelete, k.Path, nil, gone, nil); err != nil {
			return changes, ids, fmt.Errorf("deleting %d %s (%s): %w", len(gone), k.Name, strings.Join(goneKeys, ", "), err)
		}
	}
	return changes, ids, nil
}

// Delete removes every object of the backbone called name that push owns
// (tagged bb-<name>), dependents first.
func Delete(ctx context.Context, c *Client, name string, dryRun bool) ([]Change, error) {
	var owned []*Kind
	for _, k := range NewKinds(name).All() {
		if k.Owned {
			owned = append(owned, k)
		}
	}
	changes, _, err := Sync(ctx, c, owned, nil, dryRun)
	return changes, err
}

func keys(objs []Object) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return strings.Join(out, ", ")
}

// unknownTag reports NetBox's answer to a filter by a tag it does not
// have (400 "not one of the available choices"): no object carries it.
func unknownTag(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest &&
		strings.Contains(ae.Body, `"tag"`) && strings.Contains(ae.Body, "not one of the available choices")
}

// listKind lists the objects of a kind its filter selects.
func listKind(ctx context.Context, c *Client, k *Kind) ([]map[string]any, error) {
	for _, v := range k.Filter {
		if len(v) == 0 {
			return nil, nil // a filter on no values selects nothing
		}
	}
	raw, err := c.List(ctx, k.Path, k.Filter)
	if unknownTag(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, r := range raw {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			return nil, fmt.Errorf("GET %s: %w", k.Path, err)
		}
		if k.Check != nil && !k.Check(m) {
			return nil, fmt.Errorf("GET %s?%s: NetBox answered with %s id %v that the filter excludes: does this NetBox know the filter?", k.Path, k.Filter.Encode(), k.Name, m["id"])
		}
		out = append(out, m)
	}
	return out, nil
}

// listKinds lists the objects of every kind at once.
func listKinds(ctx context.Context, c *Client, kinds []*Kind) (map[*Kind][]map[string]any, error) {
	out := map[*Kind][]map[string]any{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, k := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			objs, err := listKind(ctx, c, k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			out[k] = objs
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// keyed indexes a kind's live objects by natural key, recording their ids.
func keyed(k *Kind, objs []map[string]any, ids *IDs) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	for _, m := range objs {
		key := k.Key(m, ids)
		if prev, dup := out[key]; dup {
			return nil, fmt.Errorf("NetBox holds two %s with the key %q (ids %v and %v): remove one", k.Name, key, prev["id"], m["id"])
		}
		out[key] = m
		ids.set(k, key, int(m["id"].(float64)))
	}
	return out, nil
}

// body is the JSON an object is written with: references resolved.
func (o Object) body(ids *IDs) (map[string]any, error) {
	b := map[string]any{}
	for f, v := range o.Fields {
		switch v := v.(type) {
		case Ref:
			id := ids.ID(v.Kind, v.Key)
			if id == 0 {
				return nil, fmt.Errorf("%s %q: %s refers to %s %q, which NetBox does not have", o.Kind.Name, o.Key, f, v.Kind.Name, v.Key)
			}
			b[f] = id
		case Refs:
			l := []int{}
			for _, r := range v {
				id := ids.ID(r.Kind, r.Key)
				if id == 0 {
					return nil, fmt.Errorf("%s %q: %s refers to %s %q, which NetBox does not have", o.Kind.Name, o.Key, f, r.Kind.Name, r.Key)
				}
				l = append(l, id)
			}
			sort.Ints(l)
			b[f] = l
		default:
			b[f] = v
		}
	}
	// As JSON reads it back: numbers float64, structs maps.
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	var norm map[string]any
	return norm, json.Unmarshal(data, &norm)
}

// differing lists the fields of want whose live value differs. Live
// values come nested: a choice as {value, label}, a reference as
// {id, ...}, a list of references as [{id, ...}], tags as [{slug, ...}].
func differing(want, live map[string]any) []string {
	var out []string
	for f, w := range want {
		if !sameValue(w, live[f]) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

func sameValue(want, live any) bool {
	switch l := live.(type) {
	case map[string]any:
		if v, ok := l["value"]; ok {
			return sameValue(want, v)
		}
		if id, ok := l["id"]; ok {
			return sameValue(want, id)
		}
		// custom_fields, local context data: compare the keys wanted.
		w, ok := want.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			if !sameValue(wv, l[k]) {
				return false
			}
		}
		return true
	case []any:
		w := reflect.ValueOf(want)
		if w.Kind() != reflect.Slice || w.Len() != len(l) {
			return false
		}
		var lv []string
		for _, e := range l {
			if m, ok := e.(map[string]any); ok {
				if s, ok := m["slug"]; ok && isTagList(want) {
					lv = append(lv, fmt.Sprint(s))
					continue
				}
				lv = append(lv, fmt.Sprint(m["id"]))
				continue
			}
			lv = append(lv, fmt.Sprint(e))
		}
		var wv []string
		for i := 0; i < w.Len(); i++ {
			e := w.Index(i).Interface()
			if m, ok := e.(map[string]any); ok {
				e = m["slug"]
			}
			wv = append(wv, fmt.Sprint(e))
		}
		sort.Strings(lv)
		sort.Strings(wv)
		return reflect.DeepEqual(lv, wv)
	case float64:
		switch w := want.(type) {
		case int:
			return float64(w) == l
		case float64:
			return w == l
		}
		return false
	case nil:
		return want == nil || want == ""
	}
	return reflect.DeepEqual(want, live)
}

// isTagList: tags are written as [{"slug": ...}].
func isTagList(v any) bool {
	w := reflect.ValueOf(v)
	if w.Kind() != reflect.Slice || w.Len() == 0 {
		return false
	}
	m, ok := w.Index(0).Interface().(map[string]any)
	return ok && m["slug"] != nil
}
