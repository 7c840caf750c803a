package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// WithAggregation configures the kube-apiserver's aggregation layer: a
// front-proxy CA and client certificate, and the request-header flags, so
// it proxies to aggregated APIs (see Cluster.ServeAPIService) with the
// caller's identity. Aggregator routing stays off: the API's Service is an
// ExternalName for localhost, which needs no endpoints and no kube-proxy.
func WithAggregation() Option { return func(o *options) { o.aggregation = true } }

// frontProxyClientName is the front-proxy client certificate's CN, the one
// name the request-header authenticator accepts.
const frontProxyClientName = "front-proxy-client"

func configureAggregation(env *envtest.Environment) (dir string, err error) {
	dir, err = os.MkdirTemp("", "testenv-aggregation-")
	if err != nil {
		return "", err
	}
	ca, caKey, err := newCert(frontProxyClientName+"-ca", nil, nil, nil)
	if err != nil {
		return dir, err
	}
	cert, key, err := newCert(frontProxyClientName, nil, ca, caKey)
	if err != nil {
		return dir, err
	}
	for name, data := range map[string][]byte{"front-proxy-ca.crt": ca, "front-proxy-client.crt": cert, "front-proxy-client.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return dir, err
		}
	}
	env.ControlPlane.GetAPIServer().Configure().
		Set("requestheader-client-ca-file", filepath.Join(dir, "front-proxy-ca.crt")).
		Set("requestheader-allowed-names", frontProxyClientName).
		Set("requestheader-username-headers", "X-Remote-User").
		Set("requestheader-uid-headers", "X-Remote-Uid").
		Set("requestheader-group-headers", "X-Remote-Group").
		Set("requestheader-extra-headers-prefix", "X-Remote-Extra-").
		Set("proxy-client-cert-file", filepath.Join(dir, "front-proxy-client.crt")).
		Set("proxy-client-key-file", filepath.Join(dir, "front-proxy-client.key"))
	return dir, nil
}

// ServeAPIService registers an aggregated API, group/version, served by a
// local server on port: an ExternalName Service for localhost in
// namespace default and an APIService that trusts a new serving
// certificate. It returns a directory with that certificate (tls.crt,
// tls.key) for the local server. The cluster needs WithAggregation.
func (c *Cluster) ServeAPIService(ctx context.Context, group, version string, port int) (certDir string, err error) {
	svc := "api-" + strings.ReplaceAll(group, ".", "-")
	if len(svc) > 63 {
		svc = svc[:63]
	}
	certDir = filepath.Join(c.dir, "apiservice-"+group)
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return "", err
	}
	// A self-signed serving certificate is its own CA.
	cert, key, err := newCert(svc, []string{svc + ".default.svc", "localhost"}, nil, nil)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), cert, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), key, 0o600); err != nil {
		return "", err
	}
	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Port: int32(port), TargetPort: intstr.FromInt(port)}}},
	}
	if err := c.Client.Create(ctx, service); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("service for %s: %w", group, err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": version + "." + group},
		"spec": map[string]any{
			"group": group, "version": version,
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			"caBundle": base64.StdEncoding.EncodeToString(cert),
			"service":  map[string]any{"namespace": "default", "name": svc, "port": int64(port)},
		},
	}}
	if err := c.Client.Create(ctx, apiService); err != nil {
		return "", fmt.Errorf("APIService %s.%s: %w", version, group, err)
	}
	return certDir, nil
}

// newCert makes a PEM certificate and key: signed by ca/caKey, or
// self-signed (and a CA) when ca is nil.
func newCert(cn string, dnsNames []string, ca, caKey []byte) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	parent, signer := tmpl, any(key)
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		block, _ := pem.Decode(ca)
		if parent, err = x509.ParseCertificate(block.Bytes); err != nil {
			return nil, nil, err
		}
		keyBlock, _ := pem.Decode(caKey)
		if signer, err = x509.ParseECPrivateKey(keyBlock.Bytes); err != nil {
			return nil, nil, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
