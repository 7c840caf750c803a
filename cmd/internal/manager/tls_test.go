package manager

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
)

func TestTLSFlagsRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   TLSFlags
		gateOff bool
		wantErr string // "" : valid
	}{
		{name: "nothing set"},
		{name: "TLS 1.3", flags: TLSFlags{MinVersion: "VersionTLS13"}},
		{name: "TLS 1.2 with suites", flags: TLSFlags{MinVersion: "VersionTLS12", CipherSuites: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}},
		{name: "TLS 1.1 refused as upstream does", flags: TLSFlags{MinVersion: "VersionTLS11"}, wantErr: "invalid minVersion: VersionTLS11 is not supported. Please use VersionTLS12 or VersionTLS13"},
		{name: "unknown version", flags: TLSFlags{MinVersion: "1.3"}, wantErr: "invalid minVersion"},
		{name: "unknown suite", flags: TLSFlags{CipherSuites: "TLS_NOPE"}, wantErr: "invalid cipher suites"},
		{name: "gate off", flags: TLSFlags{MinVersion: "VersionTLS13"}, gateOff: true, wantErr: "TLSOptions feature gate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			features.SetForTest(t, features.TLSOptions, !tc.gateOff)
			_, err := tc.flags.options()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one saying %q", err, tc.wantErr)
			}
		})
	}
}

// The webhook server refuses a client below --tls-min-version.
func TestWebhookServerMinVersion(t *testing.T) {
	dir := t.TempDir()
	crt, key, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": crt, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	f := TLSFlags{MinVersion: "VersionTLS13"}
	opts, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir, TLSOpts: opts})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	}()

	dial := func(maxVersion uint16) error {
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion}) //nolint:gosec // a test server's self-signed certificate
		if err == nil {
			conn.Close()
		}
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for dial(tls.VersionTLS13) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the webhook server does not accept TLS 1.3")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := dial(tls.VersionTLS12); err == nil {
		t.Error("a TLS 1.2 client was accepted with --tls-min-version=VersionTLS13")
	}
}
