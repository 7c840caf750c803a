// Package relay is the hub's side of logs and exec of fleet JobSets: an
// aggregated API (group relay.fleet.jobset.x-k8s.io) that the hub
// kube-apiserver proxies to. Users call jobsets/<name>/log and /exec; each
// member's agent holds a connection open at members/<cluster>/attach, and
// the hub forwards a user's request over the connection of the member its
// JobSet runs on. The hub holds no member credentials: the agent reaches
// its own apiserver, for its fleet copies' Pods only.
//
// Authentication is the kube-apiserver's (the request-header identity it
// sends, verified against its front-proxy CA); authorization is the hub's
// RBAC, asked again with a SubjectAccessReview for every request. Every exec
// is recorded as an event on the hub JobSet.
package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/spf13/pflag"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// The hub reads the kube-apiserver's front-proxy settings, asks the
// apiserver whether a user may do what they ask, and records execs on the
// JobSet. (config/rbac/hub binds it to system:auth-delegator and to
// extension-apiserver-authentication-reader in kube-system as well.)
//
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=configmaps,verbs=get;list;watch,resourceNames=extension-apiserver-authentication
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// APIServiceName is the relay's APIService (config/hub/relay.yaml). The hub
// serves it with its webhook certificate and keeps its caBundle current.
const APIServiceName = fleet.RelayVersion + "." + fleet.RelayGroup

// Options configure the hub's relay server.
type Options struct {
	// BindAddress is where the relay API is served (HTTPS); empty: not
	// served.
	BindAddress string
	// CertDir holds its serving certificate, tls.crt and tls.key.
	CertDir string
}

// AddFlags registers the options as flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.BindAddress, "relay-bind-address", o.BindAddress,
		"Address of the relay API (logs and exec of fleet JobSets, an aggregated API the hub kube-apiserver proxies to); empty disables it.")
	fs.StringVar(&o.CertDir, "relay-cert-dir", o.CertDir, "Directory of the relay API's serving certificate (tls.crt, tls.key).")
}

// Setup adds the relay server to mgr. It runs on every replica, leader or
// not: an agent's connection lands on one of them.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.BindAddress == "" {
		return nil
	}
	if o.CertDir == "" {
		return errors.New("relay: --relay-cert-dir is required with --relay-bind-address")
	}
	kube, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("relay: hub client: %w", err)
	}
	s := &Server{
		kube:     kube,
		reader:   mgr.GetClient(),
		recorder: mgr.GetEventRecorder("jobset-fleet-hub-relay"),
		tunnels:  newTunnels(),
	}
	// No readiness check: the relay is an add-on served next to the
	// webhooks, and a replica that cannot serve it must still serve them.
	return mgr.Add(&runnable{addr: o.BindAddress, certDir: o.CertDir, server: s})
}

// Server serves the relay API.
type Server struct {
	kube     kubernetes.Interface
	reader   client.Reader
	recorder events.EventRecorder
	tunnels  *tunnels
	authn    authenticator.Request
}

// Connected reports whether the agent of cluster holds a connection to
// this server (tests).
func (s *Server) Connected(cluster string) bool { return s.tunnels.get(cluster) != nil }

type runnable struct {
	addr    string
	certDir string
	server  *Server
}

func (r *runnable) NeedLeaderElection() bool { return false }

// Start waits for the serving certificate, then runs the front-proxy
// configuration controllers and the server until ctx ends.
func (r *runnable) Start(ctx context.Context) error {
	certs, err := waitForCertificate(ctx, r.certDir)
	if err != nil || certs == nil {
		return err
	}
	go func() {
		if err := certs.Start(ctx); err != nil {
			log.FromContext(ctx).Error(err, "Relay: watching the serving certificate failed", "dir", r.certDir)
		}
	}()
	authn := r.server.waitForAuthentication(ctx)
	if authn == nil {
		return nil
	}
	r.server.authn = authn
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("relay: listening on %s: %w", r.addr, err)
	}
	srv := &http.Server{
		Handler:           r.server,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			GetCertificate: certs.GetCertificate,
			// The kube-apiserver presents its front-proxy client
			// certificate; the request-header authenticator verifies it.
			ClientAuth: tls.RequestClientCert,
			MinVersion: tls.VersionTLS12,
			// Upgrades (attach, exec) need HTTP/1.1.
			NextProtos: []string{"http/1.1"},
		},
	}
	go func() {
		<-ctx.Done()
		r.server.tunnels.closeAll()
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// certificatePoll is how often the relay looks for its certificate before
// it has one.
var certificatePoll = time.Second

// waitForCertificate returns a watcher of the serving pair in dir once
// both files are there: in a cluster the hub's webhook certificate is
// written there by the hub itself (cmd/internal/webhookcerts), after the
// relay is set up. Nil when ctx ends first.
func waitForCertificate(ctx context.Context, dir string) (*certwatcher.CertWatcher, error) {
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	logged := false
	for {
		_, crtErr := os.Stat(crt)
		_, keyErr := os.Stat(key)
		if crtErr == nil && keyErr == nil {
			certs, err := certwatcher.New(crt, key)
			if err == nil {
				return certs, nil
			}
			// A pair being rotated may not match for a moment.
			log.FromContext(ctx).Info("Relay: serving certificate not loadable yet", "dir", dir, "error", err.Error())
		} else if !logged {
			log.FromContext(ctx).Info("Relay: waiting for the serving certificate", "dir", dir)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(certificatePoll):
		}
	}
}

// authConfigMap is where the kube-apiserver publishes its front-proxy CA
// and header names.
const (
	authConfigMapNamespace = "kube-system"
	authConfigMapName      = "extension-apiserver-authentication"
)

// waitForAuthentication starts the request-header authenticator, retrying
// (and saying why) while the kube-apiserver's front-proxy configuration
// cannot be read: logs and exec are not served meanwhile, and the rest of
// the hub runs on. Nil when ctx ends first.
func (s *Server) waitForAuthentication(ctx context.Context) authenticator.Request {
	backoff := certificatePoll
	for {
		authn, err := s.startAuthentication(ctx)
		if err == nil {
			return authn
		}
		log.FromContext(ctx).Error(err, "Relay: not serving logs and exec yet; retrying", "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// startAuthentication is the request-header authenticator, kept current
// from the kube-apiserver's ConfigMap.
func (s *Server) startAuthentication(ctx context.Context) (authenticator.Request, error) {
	ca, err := dynamiccertificates.NewDynamicCAFromConfigMapController("relay-requestheader", authConfigMapNamespace, authConfigMapName, "requestheader-client-ca-file", s.kube)
	if err != nil {
		return nil, fmt.Errorf("relay: front-proxy CA: %w", err)
	}
	headers := headerrequest.NewRequestHeaderAuthRequestController(authConfigMapName, authConfigMapNamespace, s.kube,
		"requestheader-username-headers", "requestheader-uid-headers", "requestheader-group-headers", "requestheader-extra-headers-prefix", "requestheader-allowed-names")
	if err := ca.RunOnce(ctx); err != nil {
		return nil, fmt.Errorf("relay: reading %s/%s (is the kube-apiserver's aggregation layer configured?): %w", authConfigMapNamespace, authConfigMapName, err)
	}
	if err := headers.RunOnce(ctx); err != nil {
		return nil, fmt.Errorf("relay: reading %s/%s: %w", authConfigMapNamespace, authConfigMapName, err)
	}
	go ca.Run(ctx, 1)
	go headers.Run(ctx, 1)
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		RequestHeaderConfig: &authenticatorfactory.RequestHeaderConfig{
			CAContentProvider:   ca,
			UsernameHeaders:     headerrequest.StringSliceProviderFunc(headers.UsernameHeaders),
			UIDHeaders:          headerrequest.StringSliceProviderFunc(headers.UIDHeaders),
			GroupHeaders:        headerrequest.StringSliceProviderFunc(headers.GroupHeaders),
			ExtraHeaderPrefixes: headerrequest.StringSliceProviderFunc(headers.ExtraHeaderPrefixes),
			AllowedClientNames:  headerrequest.StringSliceProviderFunc(headers.AllowedClientNames),
		},
	}.New()
	if err != nil {
		return nil, fmt.Errorf("relay: authenticator: %w", err)
	}
	return authn, nil
}

// tunnels are the agents' open connections, by member.
type tunnels struct {
	mu       sync.Mutex
	sessions map[string]*yamux.Session
}

func newTunnels() *tunnels { return &tunnels{sessions: map[string]*yamux.Session{}} }

func (t *tunnels) get(cluster string) *yamux.Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sessions[cluster]
	if s != nil && s.IsClosed() {
		return nil
	}
	return s
}

// set makes s the member's connection; an older one (a restarted agent,
// a new leader) is closed.
func (t *tunnels) set(cluster string, s *yamux.Session) {
	t.mu.Lock()
	old := t.sessions[cluster]
	t.sessions[cluster] = s
	t.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

func (t *tunnels) remove(cluster string, s *yamux.Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessions[cluster] == s {
		delete(t.sessions, cluster)
	}
}

func (t *tunnels) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sessions {
		_ = s.Close()
	}
}

func yamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.KeepAliveInterval = 20 * time.Second
	return cfg
}

// bufferedConn reads first what the HTTP server had buffered past the
// upgrade request.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
