package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Cluster is one real control plane (kube-apiserver + etcd) started by envtest.
type Cluster struct {
	Name string
	// Config is an admin (system:masters) config for the cluster.
	Config *rest.Config
	// Client is an uncached client with Scheme().
	Client client.Client
	Env    *envtest.Environment
	// KubeconfigPath is an admin kubeconfig file for out-of-process tools
	// (kubectl, kube-controller-manager, agents).
	KubeconfigPath string

	dir string
	kcm *Process
	// apiserver is the kube-apiserver RestartAPIServer started in place of
	// envtest's, which Stop stops.
	apiserver *Process
	// apiserverArgs is the command line of the killed kube-apiserver.
	apiserverArgs []string
	// aggregationDir holds WithAggregation's front-proxy certificates.
	aggregationDir string
}

// Option configures Start.
type Option func(*options)

type options struct {
	controllerManager bool
	webhookPaths      []string
	crdPaths          []string
	bootstrapTokens   bool
	aggregation       bool
}

// WithControllerManager also runs a real kube-controller-manager (Job
// controller, garbage collector, endpointslice) against the cluster, so Jobs
// create real Pods and cascading deletion really happens. No kubelet runs:
// Pods stay Pending unless a test sets their status.
func WithControllerManager() Option { return func(o *options) { o.controllerManager = true } }

// WithWebhooks installs the webhook configurations found in paths, pointed at
// the local server described by Env.WebhookInstallOptions.
func WithWebhooks(paths ...string) Option {
	return func(o *options) { o.webhookPaths = append(o.webhookPaths, paths...) }
}

// WithBootstrapTokenAuth lets the apiserver authenticate bootstrap tokens
// (Secrets bootstrap-token-<id> in kube-system), as kubeadm and kind
// clusters do.
func WithBootstrapTokenAuth() Option { return func(o *options) { o.bootstrapTokens = true } }

// WithCRDPaths installs CRDs from these directories too.
func WithCRDPaths(paths ...string) Option {
	return func(o *options) { o.crdPaths = append(o.crdPaths, paths...) }
}

// Start starts a cluster and stops it when the test ends. It fails the test,
// never skips it, when the control plane cannot start.
func Start(t testing.TB, name string, opts ...Option) *Cluster {
	t.Helper()
	c, err := start(name, opts...)
	if err != nil {
		t.Fatalf("start cluster %q: %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster %q: %v", name, err)
		}
	})
	return c
}

// StartN starts several independent clusters side by side, in parallel.
func StartN(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	clusters := make([]*Cluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { clusters[i], errs[i] = start(name) })
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(func() {
				if err := c.Stop(); err != nil {
					t.Errorf("stop cluster %q: %v", names[i], err)
				}
			})
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start cluster %q: %v", names[i], err)
		}
	}
	return clusters
}

// StartMain is Start for TestMain, where there is no testing.TB: it returns a
// stop function instead of registering a cleanup, and panics on failure.
func StartMain(name string, opts ...Option) (*Cluster, func()) {
	c, err := start(name, opts...)
	if err != nil {
		panic(fmt.Sprintf("start cluster %q: %v", name, err))
	}
	return c, func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop cluster %q: %v\n", name, err)
		}
	}
}

func start(name string, opts ...Option) (*Cluster, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := Binary(bin); err != nil {
			return nil, err
		}
	}
	env := &envtest.Environment{
		Scheme:                   Scheme(),
		BinaryAssetsDirectory:    BinDir(),
		DownloadBinaryAssets:     false,
		CRDDirectoryPaths:        append(CRDPaths(), o.crdPaths...),
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if len(o.webhookPaths) > 0 {
		env.WebhookInstallOptions.Paths = o.webhookPaths
	}
	if o.bootstrapTokens {
		env.ControlPlane.GetAPIServer().Configure().Set("enable-bootstrap-token-auth", "true")
	}
	var aggregationDir string
	if o.aggregation {
		var err error
		if aggregationDir, err = configureAggregation(env); err != nil {
			_ = os.RemoveAll(aggregationDir)
			return nil, fmt.Errorf("aggregation layer: %w", err)
		}
	}
	cfg, err := env.Start()
	if err != nil {
		_ = os.RemoveAll(aggregationDir)
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	c := &Cluster{Name: name, Config: cfg, Env: env, aggregationDir: aggregationDir}
	if err := c.init(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	if o.controllerManager {
		if err := c.startControllerManager(); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) init() error {
	var err error
	c.Client, err = client.New(c.Config, client.Options{Scheme: Scheme()})
	if err != nil {
		return fmt.Errorf("client for %s: %w", c.Name, err)
	}
	c.dir, err = os.MkdirTemp("", "testenv-"+c.Name+"-")
	if err != nil {
		return err
	}
	c.KubeconfigPath = filepath.Join(c.dir, "kubeconfig")
	kubeconfig := strings.ReplaceAll(string(c.Env.KubeConfig), "envtest", c.Name)
	if err := os.WriteFile(c.KubeconfigPath, []byte(kubeconfig), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig for %s: %w", c.Name, err)
	}
	return nil
}

// controllers is what kube-controller-manager runs for tests: enough for Jobs
// to make Pods, for ownership to cascade, for headless Services to get
// endpoints, and for aggregated ClusterRoles (admin, edit, view) to fill.
var controllers = []string{
	"job-controller",
	"garbage-collector-controller",
	"endpointslice-controller",
	"ttl-after-finished-controller",
	"pod-garbage-collector-controller",
	"namespace-controller",
	"clusterrole-aggregation-controller",
}

func (c *Cluster) startControllerManager() error {
	bin, err := Binary("kube-controller-manager")
	if err != nil {
		return err
	}
	logPath := filepath.Join(c.dir, "kube-controller-manager.log")
	c.kcm, err = StartProcess("kube-controller-manager of "+c.Name, logPath, bin, []string{
		"--kubeconfig=" + c.KubeconfigPath,
		"--authentication-kubeconfig=" + c.KubeconfigPath,
		"--authorization-kubeconfig=" + c.KubeconfigPath,
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-job-syncs=10",
		"--concurrent-gc-syncs=10",
		"-v=1",
	}, nil)
	if err != nil {
		return fmt.Errorf("start kube-controller-manager for %s: %w", c.Name, err)
	}
	return nil
}

// ControllerManagerLog returns what kube-controller-manager printed so far, for
// failure messages.
func (c *Cluster) ControllerManagerLog() string {
	if c.kcm == nil {
		return ""
	}
	data, _ := os.ReadFile(c.kcm.LogPath)
	return string(data)
}

// Stop stops the controller manager, the apiserver and etcd, and removes the
// cluster's files.
func (c *Cluster) Stop() error {
	if c.kcm != nil {
		c.kcm.Stop()
	}
	if c.apiserver != nil {
		c.apiserver.Stop()
	}
	err := c.Env.Stop()
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	if c.aggregationDir != "" {
		_ = os.RemoveAll(c.aggregationDir)
	}
	return err
}

// KillAPIServer kills the cluster's kube-apiserver with SIGKILL, as a
// crashed or unplugged control plane; etcd and the controller manager keep
// running. RestartAPIServer brings it back.
func (c *Cluster) KillAPIServer() error {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return err
	}
	pid, args, err := childProcess("kube-apiserver", "--secure-port="+u.Port())
	if err != nil {
		return fmt.Errorf("kube-apiserver of %s: %w", c.Name, err)
	}
	if c.apiserver != nil && c.apiserver.Pid() == pid {
		c.apiserver.Kill()
	} else if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing kube-apiserver of %s: %w", c.Name, err)
	}
	c.apiserverArgs = args
	return nil
}

// RestartAPIServer starts the kube-apiserver that KillAPIServer killed,
// with the same command line (same port, certificates and etcd), and waits
// until it serves.
func (c *Cluster) RestartAPIServer() error {
	if c.apiserverArgs == nil {
		return fmt.Errorf("the kube-apiserver of %s was not killed", c.Name)
	}
	p, err := StartProcess("kube-apiserver of "+c.Name, filepath.Join(c.dir, "kube-apiserver.log"), c.apiserverArgs[0], c.apiserverArgs[1:], nil)
	if err != nil {
		return err
	}
	c.apiserver, c.apiserverArgs = p, nil
	return Poll(2*time.Minute, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		return c.Client.List(context.Background(), &corev1.NamespaceList{}, client.Limit(1))
	})
}
