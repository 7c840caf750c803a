// Package relay is the agent's side of logs and exec through the hub: the
// agent opens a long-lived connection to the hub's relay API (an HTTP
// upgrade through the hub kube-apiserver, with its own hub credentials),
// and serves the hub's requests on it, multiplexed with yamux: logs and
// exec of the Pods of the fleet JobSets it runs, never of any other Pod.
// The hub holds no member credentials; the agent reaches its own
// apiserver with its own.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/yamux"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// The agent reads its copies' Pods and their logs, and runs exec in them,
// on its own member. It serves only Pods of fleet copies (see resolve).
//
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get
// +kubebuilder:rbac:groups="",resources=pods/exec,verbs=create;get

// Options configure the agent's relay.
type Options struct {
	// ClusterName is the member's name in the fleet.
	ClusterName string
	// HubConfig are the agent's hub credentials.
	HubConfig *rest.Config
	// RetryInterval is the wait before reconnecting; default 5s.
	RetryInterval time.Duration
}

// Setup adds the relay to mgr (the member's manager): a leader-elected
// runnable that keeps one connection to the hub open.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.ClusterName == "" || o.HubConfig == nil {
		return errors.New("relay: ClusterName and HubConfig are required")
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 5 * time.Second
	}
	h, err := newHandler(mgr.GetConfig(), mgr.GetAPIReader(), o.ClusterName)
	if err != nil {
		return err
	}
	hubClient, err := upgradeClient(o.HubConfig)
	if err != nil {
		return fmt.Errorf("relay: hub client: %w", err)
	}
	attachURL, err := AttachURL(o.HubConfig.Host, o.ClusterName)
	if err != nil {
		return err
	}
	c := &connector{hub: hubClient, url: attachURL, handler: h, retry: o.RetryInterval, log: mgr.GetLogger().WithName("relay").WithValues("cluster", o.ClusterName)}
	return mgr.Add(c)
}

// AttachURL is where the agent of cluster opens its connection.
func AttachURL(hubHost, cluster string) (string, error) {
	u, err := url.Parse(hubHost)
	if err != nil {
		return "", fmt.Errorf("relay: hub URL %q: %w", hubHost, err)
	}
	u.Path = path.Join(u.Path, "/apis", fleet.RelayGroup, fleet.RelayVersion, "namespaces", fleet.MemberNamespace(cluster),
		fleet.RelayMembers, cluster, fleet.RelayAttach)
	return u.String(), nil
}

// upgradeClient is an HTTP/1.1 client with cfg's credentials: an upgrade
// cannot happen over HTTP/2.
func upgradeClient(cfg *rest.Config) (*http.Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	cfg.Timeout = 0
	return rest.HTTPClientFor(cfg)
}

// connector keeps the agent's connection to the hub open.
type connector struct {
	hub     *http.Client
	url     string
	handler http.Handler
	retry   time.Duration
	log     logr.Logger
}

// Start connects, serves until the connection drops, and connects again,
// until ctx ends.
func (c *connector) Start(ctx context.Context) error {
	var lastErr string
	for ctx.Err() == nil {
		err := c.serveOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && err.Error() != lastErr {
			c.log.Info("Relay connection to the hub failed; retrying", "error", err.Error(), "retryInterval", c.retry)
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
		case <-time.After(c.retry):
		}
	}
	return nil
}

// serveOnce opens one connection and serves the hub's requests on it until
// it closes.
func (c *connector) serveOnce(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", fleet.RelayProtocol)
	resp, err := c.hub.Do(req)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", c.url, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		return fmt.Errorf("hub refused the relay connection: %s: %s", resp.Status, body)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		_ = resp.Body.Close()
		return errors.New("hub upgraded the relay connection, but the transport gives no connection")
	}
	// The hub opens the streams (one per request); the agent accepts them.
	session, err := yamux.Server(conn, yamuxConfig())
	if err != nil {
		_ = conn.Close()
		return err
	}
	c.log.Info("Relay connected to the hub")
	srv := &http.Server{Handler: c.handler, ReadHeaderTimeout: 30 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = session.Close() })
	defer stop()
	err = srv.Serve(session)
	_ = session.Close()
	return fmt.Errorf("relay connection closed: %w", err)
}

func yamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	// Keepalives find a dead connection (a hub restart) within a minute.
	cfg.KeepAliveInterval = 20 * time.Second
	return cfg
}

// newHandler serves the hub's requests: /log and /exec.
func newHandler(member *rest.Config, reader client.Reader, cluster string) (http.Handler, error) {
	kube, err := kubernetes.NewForConfig(member)
	if err != nil {
		return nil, fmt.Errorf("relay: member client: %w", err)
	}
	execTransport, err := upgradeTransport(member)
	if err != nil {
		return nil, fmt.Errorf("relay: member transport: %w", err)
	}
	memberURL, err := url.Parse(member.Host)
	if err != nil {
		return nil, err
	}
	s := &server{kube: kube, reader: reader, cluster: cluster, memberURL: memberURL, execTransport: execTransport}
	mux := http.NewServeMux()
	mux.HandleFunc("/"+fleet.RelayLog, s.serveLog)
	mux.HandleFunc("/"+fleet.RelayExec, s.serveExec)
	return mux, nil
}

func upgradeTransport(cfg *rest.Config) (http.RoundTripper, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return rest.TransportFor(cfg)
}
