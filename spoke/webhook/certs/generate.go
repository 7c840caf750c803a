// Package certs gives the webhook server a serving certificate with no
// manual step: it keeps a self-signed CA and a serving certificate in a
// Secret (shared by all replicas), writes them to the webhook server's
// CertDir, patches the CA into the webhook configurations' caBundle, and
// renews both before they expire.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Keys of the Secret that holds the bundle. tls.crt/tls.key match the
// kubernetes.io/tls Secret type and the webhook server's default file names.
const (
	CACertKey      = "ca.crt"
	CAKeyKey       = "ca.key"
	ServingCertKey = "tls.crt"
	ServingKeyKey  = "tls.key"
)

// clockSkew backdates NotBefore so a freshly issued certificate is valid on
// an apiserver whose clock is slightly behind ours.
const clockSkew = 5 * time.Minute

// Bundle is the CA and serving key pair, PEM-encoded as stored.
type Bundle struct {
	// CACerts is the trust bundle: the current CA first, then a previous CA
	// that is kept until it expires so certificates it signed (still served
	// by other replicas during a CA rotation) stay trusted.
	CACerts []byte
	CAKey   []byte
	Cert    []byte
	Key     []byte
}

// FromData reads a bundle from Secret data.
func FromData(data map[string][]byte) *Bundle {
	return &Bundle{CACerts: data[CACertKey], CAKey: data[CAKeyKey], Cert: data[ServingCertKey], Key: data[ServingKeyKey]}
}

// Data is the bundle as Secret data.
func (b *Bundle) Data() map[string][]byte {
	return map[string][]byte{CACertKey: b.CACerts, CAKeyKey: b.CAKey, ServingCertKey: b.Cert, ServingKeyKey: b.Key}
}

// Spec says what the serving certificate must cover and how long things live.
type Spec struct {
	DNSNames     []string
	IPs          []net.IP
	CAValidity   time.Duration
	CertValidity time.Duration
	// RenewBefore renews the serving certificate when less than this remains.
	RenewBefore time.Duration
}

// Renewal says which parts of a bundle need to be (re)issued, and why.
type Renewal struct {
	CA, Cert bool
	Reason   string
}

// Needed reports whether anything must be (re)issued.
func (r Renewal) Needed() bool { return r.CA || r.Cert }

// Check decides what to renew at time now. It is pure so the thresholds can
// be table-tested.
func Check(b *Bundle, spec Spec, now time.Time) Renewal {
	ca, _, err := parseCA(b)
	if err != nil {
		return Renewal{CA: true, Cert: true, Reason: fmt.Sprintf("no usable CA: %v", err)}
	}
	// The CA must outlive any serving certificate it issues, or a renewal
	// would produce a certificate cut short by the CA's expiry.
	if ca.NotAfter.Sub(now) < spec.CertValidity {
		return Renewal{CA: true, Cert: true, Reason: fmt.Sprintf("CA expires at %s", ca.NotAfter.Format(time.RFC3339))}
	}
	cert, err := parseServing(b)
	if err != nil {
		return Renewal{Cert: true, Reason: fmt.Sprintf("no usable serving certificate: %v", err)}
	}
	if cert.NotAfter.Sub(now) < spec.RenewBefore {
		return Renewal{Cert: true, Reason: fmt.Sprintf("serving certificate expires at %s", cert.NotAfter.Format(time.RFC3339))}
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return Renewal{Cert: true, Reason: "serving certificate not signed by the current CA"}
	}
	for _, name := range spec.DNSNames {
		if !slices.Contains(cert.DNSNames, name) {
			return Renewal{Cert: true, Reason: fmt.Sprintf("serving certificate does not cover %s", name)}
		}
	}
	for _, ip := range spec.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return Renewal{Cert: true, Reason: fmt.Sprintf("serving certificate does not cover %s", ip)}
		}
	}
	return Renewal{}
}

// Renew returns a new bundle with the parts r asks for reissued. A replaced
// CA stays in the trust bundle (after the new one) until it expires.
func Renew(old *Bundle, r Renewal, spec Spec, now time.Time) (*Bundle, error) {
	b := &Bundle{CACerts: old.CACerts, CAKey: old.CAKey, Cert: old.Cert, Key: old.Key}
	if r.CA {
		certPEM, keyPEM, err := newCA(spec.CAValidity, now)
		if err != nil {
			return nil, err
		}
		b.CACerts = append(certPEM, unexpiredCerts(old.CACerts, now)...)
		b.CAKey = keyPEM
	}
	if r.CA || r.Cert {
		ca, caKey, err := parseCA(b)
		if err != nil {
			return nil, fmt.Errorf("parsing CA: %w", err)
		}
		b.Cert, b.Key, err = newServing(ca, caKey, spec, now)
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func newCA(validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("jobset-fleet-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func newServing(ca *x509.Certificate, caKey crypto.Signer, spec Spec, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(spec.DNSNames) == 0 && len(spec.IPs) == 0 {
		return nil, nil, errors.New("serving certificate needs at least one DNS name or IP")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating serving key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	cn := ""
	if len(spec.DNSNames) > 0 {
		cn = spec.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     minTime(now.Add(spec.CertValidity), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// parseCA returns the current (first) CA certificate and its key, checking
// that they belong together.
func parseCA(b *Bundle) (*x509.Certificate, crypto.Signer, error) {
	certs, err := parseCerts(b.CACerts)
	if err != nil {
		return nil, nil, err
	}
	if !certs[0].IsCA {
		return nil, nil, errors.New("first certificate in ca.crt is not a CA")
	}
	key, err := parseKey(b.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, nil, errors.New("CA key does not match CA certificate")
	}
	return certs[0], key, nil
}

func parseServing(b *Bundle) (*x509.Certificate, error) {
	certs, err := parseCerts(b.Cert)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(b.Key)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, errors.New("serving key does not match serving certificate")
	}
	return certs[0], nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#8 key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// unexpiredCerts re-encodes the certificates in data still valid at now.
func unexpiredCerts(data []byte, now time.Time) []byte {
	certs, err := parseCerts(data)
	if err != nil {
		return nil
	}
	var out bytes.Buffer
	for _, c := range certs {
		if now.Before(c.NotAfter) {
			_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
	}
	return out.Bytes()
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return n, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
