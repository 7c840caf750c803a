package apicount

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
)

// ServingCert is a self-signed certificate for 127.0.0.1 and localhost: the
// counting proxies serve it, and upstream's webhook server (which cannot be
// turned off) needs one in its cert dir.
type ServingCert struct {
	certPEM, keyPEM []byte
	pair            tls.Certificate
}

func NewServingCert() (*ServingCert, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return nil, fmt.Errorf("generating a serving certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the serving certificate: %w", err)
	}
	return &ServingCert{certPEM: certPEM, keyPEM: keyPEM, pair: pair}, nil
}

// WriteDir writes tls.crt and tls.key (controller-runtime's default names).
func (c *ServingCert) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), c.certPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tls.key"), c.keyPEM, 0o600)
}
