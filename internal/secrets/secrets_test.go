package secrets

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lab.secrets.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	k1 := s.PSK("pe101-pe201")
	if k1 == s.PSK("pe101-pe102") {
		t.Fatal("two links share a key")
	}
	cert, key := s.RouterCert("pe101")
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s2.PSK("pe101-pe201") != k1 {
		t.Error("PSK changed after reopening: rendered configs would differ")
	}
	c2, k2 := s2.RouterCert("pe101")
	if string(c2) != string(cert) || string(k2) != string(key) {
		t.Error("certificate changed after reopening")
	}
	if s2.changed {
		t.Error("reopened store claims changes")
	}
}

func TestOpenRefusesReadableStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(path, []byte(`{"psks":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("a world-readable store was accepted")
	}
}

func TestRouterCertChainsToCA(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "s.json"))
	certPEM, keyPEM := s.RouterCert("pe201")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACert()) {
		t.Fatal("CA certificate does not parse")
	}
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "pe201", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("router certificate does not verify against the CA: %v", err)
	}
	if cert.Subject.CommonName != "pe201" {
		t.Errorf("subject %q, want the router name (its IKE identity)", cert.Subject.CommonName)
	}
	kb, _ := pem.Decode(keyPEM)
	if _, err := x509.ParseECPrivateKey(kb.Bytes); err != nil {
		t.Errorf("private key: %v", err)
	}
}
