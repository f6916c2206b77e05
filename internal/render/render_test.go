package render_test

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/render"
	"github.com/backbone-net/backbone/internal/render/strongswan"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func renderYAML(t testing.TB, y []byte, opt render.Options) []render.File {
	t.Helper()
	return render.Files(intenttest.Plan(t, y, "test.yaml"), intenttest.PSKs{}, opt)
}

// TestGoldenDefault compares every rendered file of the default backbone
// byte for byte with testdata/golden/default. `go test ./internal/render
// -update` rewrites them; review the diff.
func TestGoldenDefault(t *testing.T) {
	dir := filepath.Join("testdata", "golden", "default")
	files := renderYAML(t, intent.DefaultYAML(), render.Options{})
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := render.Write(dir, files); err != nil {
			t.Fatal(err)
		}
		// Goldens are for reading: no executable or private modes in git.
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				os.Chmod(path, 0o644)
			}
			return err
		})
		return
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f.Path] = true
		golden, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Errorf("%s: %v (run go test ./internal/render -update)", f.Path, err)
			continue
		}
		if !bytes.Equal(f.Data, golden) {
			t.Errorf("%s differs from its golden file (run go test ./internal/render -update and review the diff):\n%s", f.Path, lineDiff(string(golden), string(f.Data)))
		}
	}
	// A golden file that is no longer rendered is stale.
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !want[rel] {
			t.Errorf("golden file %s is no longer rendered (run -update)", rel)
		}
		return nil
	})
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("  line " + itoa(i+1) + ":\n    -" + wl + "\n    +" + gl + "\n")
			if shown++; shown == 5 {
				b.WriteString("  ...\n")
				break
			}
		}
	}
	return b.String()
}

func itoa(n int) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(buf[i:])
		}
	}
}

// The file set of the default backbone: every router gets FRR and Linux
// files; PEs with encrypted links get strongSwan's, the secrets 0600.
func TestDefaultFileSet(t *testing.T) {
	files := renderYAML(t, intent.DefaultYAML(), render.Options{})
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		switch filepath.Base(f.Path) {
		case strongswan.SecretsFile:
			if f.Mode != 0o600 {
				t.Errorf("%s mode %v, want 0600", f.Path, f.Mode)
			}
			if !bytes.Contains(f.Data, []byte(intenttest.PSKs{}.PSK("pe101-pe201"))) && strings.HasPrefix(f.Path, "pe101/") {
				t.Errorf("%s lacks the pe101-pe201 key", f.Path)
			}
		case "linux.sh":
			if f.Mode != 0o755 {
				t.Errorf("%s mode %v, want 0755", f.Path, f.Mode)
			}
		case "swanctl.conf":
			if bytes.Contains(f.Data, []byte("secret =")) || bytes.Contains(f.Data, []byte(intenttest.PSKs{}.PSK("pe101-pe201"))) {
				t.Errorf("%s holds a secret", f.Path)
			}
		default:
			if f.Mode != 0o644 {
				t.Errorf("%s mode %v, want 0644", f.Path, f.Mode)
			}
		}
	}
	if !sort.StringsAreSorted(paths) {
		t.Errorf("files not sorted: %v", paths)
	}
	want := []string{"plan.json"}
	for _, r := range []string{"ce1", "ce2"} {
		want = append(want, r+"/frr.conf", r+"/linux.json", r+"/linux.sh")
	}
	for _, r := range []string{"pe101", "pe102", "pe201", "pe202"} {
		want = append(want, r+"/frr.conf", r+"/linux.json", r+"/linux.sh", r+"/strongswan.conf", r+"/swanctl-secrets.conf", r+"/swanctl.conf")
	}
	sort.Strings(want)
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("files:\n got %v\nwant %v", paths, want)
	}
}

// Rendering is a pure function: two independent runs (load, plan,
// render) give byte-identical files, for every variant.
func TestDeterministic(t *testing.T) {
	for _, v := range intenttest.Variants(t) {
		t.Run(v.Name, func(t *testing.T) {
			a := renderYAML(t, v.YAML, render.Options{})
			b := renderYAML(t, v.YAML, render.Options{})
			if len(a) != len(b) {
				t.Fatalf("%d files, then %d", len(a), len(b))
			}
			for i := range a {
				if a[i].Path != b[i].Path || a[i].Mode != b[i].Mode || !bytes.Equal(a[i].Data, b[i].Data) {
					t.Errorf("%s differs between two renders", a[i].Path)
				}
			}
		})
	}
}

func TestRuntimeDirOption(t *testing.T) {
	files := renderYAML(t, intent.DefaultYAML(), render.Options{RuntimeDir: "/tmp/bb-rt"})
	for _, f := range files {
		if f.Path == "pe101/strongswan.conf" {
			if !bytes.Contains(f.Data, []byte("unix:///tmp/bb-rt/pe101/charon.vici")) {
				t.Errorf("strongswan.conf ignores RuntimeDir:\n%s", f.Data)
			}
			return
		}
	}
	t.Fatal("no pe101/strongswan.conf")
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	files := renderYAML(t, intent.DefaultYAML(), render.Options{})
	if err := render.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.Mode {
			t.Errorf("%s written with mode %v, want %v", f.Path, fi.Mode().Perm(), f.Mode)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*", "*.tmp"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}
