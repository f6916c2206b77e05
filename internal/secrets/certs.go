package secrets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// certValidity is how long generated certificates are valid.
const certValidity = 10 * 365 * 24 * time.Hour

// CACert returns the backbone CA's certificate, creating the CA (ECDSA
// P-256) on first use.
func (s *Store) CACert() []byte {
	return []byte(s.ca().Cert)
}

func (s *Store) ca() *KeyPair {
	if s.CA != nil {
		return s.CA
	}
	key := mustKey()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "backbone CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(fmt.Sprintf("secrets: create CA: %v", err)) // only fails on programming errors
	}
	s.CA = &KeyPair{Cert: pemBlock("CERTIFICATE", der), Key: pemKey(key)}
	s.changed = true
	return s.CA
}

// RouterCert returns a router's certificate (subject and SAN = the router's
// name, which is its IKE identity) and private key, signed by the CA,
// creating them on first use.
func (s *Store) RouterCert(name string) (cert, key []byte) {
	if kp, ok := s.Certs[name]; ok {
		return []byte(kp.Cert), []byte(kp.Key)
	}
	ca := s.ca()
	caBlock, _ := pem.Decode([]byte(ca.Cert))
	caCert, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		panic(fmt.Sprintf("secrets: CA certificate: %v", err))
	}
	keyBlock, _ := pem.Decode([]byte(ca.Key))
	caKey, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		panic(fmt.Sprintf("secrets: CA key: %v", err))
	}
	k := mustKey()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		panic(fmt.Sprintf("secrets: certificate for %s: %v", name, err))
	}
	if s.Certs == nil {
		s.Certs = map[string]*KeyPair{}
	}
	kp := &KeyPair{Cert: pemBlock("CERTIFICATE", der), Key: pemKey(k)}
	s.Certs[name] = kp
	s.changed = true
	return []byte(kp.Cert), []byte(kp.Key)
}

func mustKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pemKey(k *ecdsa.PrivateKey) string {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}
