package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// KueueModule is the Go module that pins Kueue (hack/kueue): its copy in the
// module cache holds the CRDs and webhook manifests of exactly the version
// bin/kueue-manager is built from.
const KueueModule = "sigs.k8s.io/kueue"

// kueueMetricsCertDir is where Kueue's manager reads its metrics serving
// certificate when its internal certificate management is off. The path is
// fixed in Kueue's main (v0.17), not configurable; the tests disable the
// metrics endpoint, but the manager still refuses to start without the
// files.
const kueueMetricsCertDir = "/etc/kueue/metrics/certs"

// Kueue is a Kueue manager running as a local process against one cluster,
// with its webhooks pointed at it.
type Kueue struct {
	*Process
	// Namespace is Kueue's own (its configuration's namespace).
	Namespace string
	// dir holds the configuration and certificates; removed by Stop when
	// StartKueue made it.
	dir    string
	ownDir bool
}

// KueueOptions configure StartKueue.
type KueueOptions struct {
	// Frameworks are the integrations Kueue manages; default: JobSet only.
	Frameworks []string
	// Extra is YAML merged into Kueue's Configuration (e.g. fairSharing).
	Extra map[string]any
	// Dir keeps the manager's configuration, certificates and log; "": a
	// temporary directory that Stop removes.
	Dir string
	// LogPath is the manager's log; "": kueue.log in Dir.
	LogPath string
	// Detach runs the manager in a session of its own, outliving this
	// process (the local fleet of make dev-up, stopped by its pid).
	Detach bool
	// Kubeconfig is what the manager connects with (default: the
	// cluster's admin kubeconfig), e.g. one through a counting proxy.
	Kubeconfig string
}

// KueueSourceDir is the directory of the pinned Kueue module in the module
// cache, downloaded through the Go module proxy if needed.
func KueueSourceDir() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", KueueModule)
	cmd.Dir = filepath.Join(RepoRoot(), "hack", "kueue")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s in hack/kueue: %w\n%s%s", KueueModule, err, out, stderr.String())
	}
	var mod struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("go mod download output: %w", err)
	}
	if mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", KueueModule, mod.Error)
	}
	return mod.Dir, nil
}

// StartKueue installs Kueue's CRDs and webhooks (only those of Kueue's own
// types and of the enabled integrations) on c and runs bin/kueue-manager
// against it until Stop. Kueue's internal certificate management is off:
// its webhooks are served with a certificate for localhost made here, whose
// CA goes into the webhook configurations. It returns once Kueue is ready.
func StartKueue(ctx context.Context, c *Cluster, opts KueueOptions) (*Kueue, error) {
	bin, err := Binary("kueue-manager")
	if err != nil {
		return nil, fmt.Errorf("%w (`hack/tools.sh kueue-manager` builds it)", err)
	}
	if len(opts.Frameworks) == 0 {
		opts.Frameworks = []string{"jobset.x-k8s.io/jobset"}
	}
	src, err := KueueSourceDir()
	if err != nil {
		return nil, err
	}
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(src, "config", "components", "crd", "bases")}, ErrorIfPathMissing: true,
	}); err != nil {
		return nil, fmt.Errorf("installing Kueue's CRDs on %s: %w", c.Name, err)
	}
	k := &Kueue{Namespace: "kueue-system"}
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: k.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	mutating, validating, err := kueueWebhooks(filepath.Join(src, "config", "components", "webhook", "manifests.yaml"), opts.Frameworks)
	if err != nil {
		return nil, err
	}
	k.dir, k.ownDir = opts.Dir, opts.Dir == ""
	if k.ownDir {
		if k.dir, err = os.MkdirTemp("", "kueue-"+c.Name+"-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return nil, err
	}
	webhooks := envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1", MutatingWebhooks: mutating, ValidatingWebhooks: validating}
	err = webhooks.Install(c.Config)
	// The serving certificate moves to dir, which lives as long as the
	// manager (envtest's directory is a temporary one).
	certDir := filepath.Join(k.dir, "certs")
	if err == nil {
		err = copyFiles(webhooks.LocalServingCertDir, certDir, "tls.crt", "tls.key")
	}
	_ = webhooks.Cleanup()
	if err != nil {
		k.Stop()
		return nil, fmt.Errorf("installing Kueue's webhooks on %s: %w", c.Name, err)
	}
	if err := kueueMetricsCert(certDir); err != nil {
		k.Stop()
		return nil, err
	}
	healthPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"apiVersion":             "config.kueue.x-k8s.io/v1beta2",
		"kind":                   "Configuration",
		"namespace":              k.Namespace,
		"health":                 map[string]any{"healthProbeBindAddress": net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort))},
		"metrics":                map[string]any{"bindAddress": "0"},
		"leaderElection":         map[string]any{"leaderElect": false},
		"internalCertManagement": map[string]any{"enable": false},
		"webhook": map[string]any{
			"host": webhooks.LocalServingHost, "port": webhooks.LocalServingPort, "certDir": certDir,
		},
		"integrations": map[string]any{"frameworks": opts.Frameworks},
	}
	for key, v := range opts.Extra {
		cfg[key] = v
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(k.dir, "config.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, err
	}
	// The visibility API server would bind a fixed port (8082) and needs an
	// APIService: the tests read Kueue's objects instead.
	args := []string{"--config=" + cfgPath, "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=2"}
	logPath := opts.LogPath
	if logPath == "" {
		logPath = filepath.Join(k.dir, "kueue.log")
	}
	kubeconfig := c.KubeconfigPath
	if opts.Kubeconfig != "" {
		kubeconfig = opts.Kubeconfig
	}
	args = append(args, "--kubeconfig="+kubeconfig)
	name := "kueue-manager/" + c.Name
	if opts.Detach {
		k.Process, err = StartDaemon(name, logPath, bin, args)
	} else {
		k.Process, err = StartProcess(name, logPath, bin, args, nil)
	}
	if err != nil {
		k.Stop()
		return nil, err
	}
	if err := k.waitReady(healthPort); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

// Stop stops the manager and removes the files of a temporary directory;
// the cluster keeps its CRDs and webhook configurations.
func (k *Kueue) Stop() {
	if k.Process != nil {
		k.Process.Stop()
	}
	if k.ownDir && k.dir != "" {
		_ = os.RemoveAll(k.dir)
	}
}

// Log is the tail of the manager's log, for failure messages.
func (k *Kueue) Log(lines int) string { return Tail(k.LogPath, lines) }

func (k *Kueue) waitReady(healthPort int) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := k.Exited(); err != nil {
			return err
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kueue-manager not ready within 60s; last lines of %s:\n%s", k.LogPath, k.Log(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kueueWebhooks reads Kueue's webhook manifest and keeps the webhooks of
// Kueue's own types and of the enabled integrations: a webhook of an
// integration Kueue does not serve would refuse every such object.
func kueueWebhooks(manifest string, frameworks []string) ([]*admissionv1.MutatingWebhookConfiguration, []*admissionv1.ValidatingWebhookConfiguration, error) {
	data, err := os.ReadFile(manifest)
	if err != nil {
		return nil, nil, err
	}
	wanted := kueueWebhookFilter(frameworks)
	var mutating []*admissionv1.MutatingWebhookConfiguration
	var validating []*admissionv1.ValidatingWebhookConfiguration
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", manifest, err)
		}
		switch head.Kind {
		case "MutatingWebhookConfiguration":
			w := &admissionv1.MutatingWebhookConfiguration{}
			if err := yaml.Unmarshal(doc, w); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", manifest, err)
			}
			w.Name = "kueue-mutating-webhook-configuration"
			w.Webhooks = slices.DeleteFunc(w.Webhooks, func(h admissionv1.MutatingWebhook) bool { return !wanted(h.Rules) })
			mutating = append(mutating, w)
		case "ValidatingWebhookConfiguration":
			w := &admissionv1.ValidatingWebhookConfiguration{}
			if err := yaml.Unmarshal(doc, w); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", manifest, err)
			}
			w.Name = "kueue-validating-webhook-configuration"
			w.Webhooks = slices.DeleteFunc(w.Webhooks, func(h admissionv1.ValidatingWebhook) bool { return !wanted(h.Rules) })
			validating = append(validating, w)
		}
	}
	if len(mutating) == 0 || len(validating) == 0 {
		return nil, nil, fmt.Errorf("%s: no webhook configurations found", manifest)
	}
	return mutating, validating, nil
}

// kueueWebhookFilter reports whether a webhook of Kueue's, by its rules,
// is one of Kueue's own types or of an enabled integration: a webhook of an
// integration Kueue does not serve would refuse every such object.
func kueueWebhookFilter(frameworks []string) func([]admissionv1.RuleWithOperations) bool {
	groups := []string{"kueue.x-k8s.io"}
	for _, f := range frameworks {
		g, _, _ := strings.Cut(f, "/")
		groups = append(groups, g)
	}
	return func(rules []admissionv1.RuleWithOperations) bool {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				if slices.Contains(groups, g) {
					return true
				}
			}
		}
		return false
	}
}

// kueueMetricsCert puts a serving certificate where Kueue's manager insists
// on reading one, unless one is there.
func kueueMetricsCert(certDir string) error {
	if _, err := os.Stat(filepath.Join(kueueMetricsCertDir, "tls.crt")); err == nil {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("kueue-manager reads a metrics certificate from %s even with metrics off, and it could not be written "+
			"(create the directory writable by the test user, or put any tls.crt and tls.key there): %w", kueueMetricsCertDir, err)
	}
	if err := os.MkdirAll(kueueMetricsCertDir, 0o755); err != nil {
		return fail(err)
	}
	for _, name := range []string{"tls.key", "tls.crt"} {
		data, err := os.ReadFile(filepath.Join(certDir, name))
		if err != nil {
			return err
		}
		// Written under a temporary name first: parallel tests may race.
		tmp := filepath.Join(kueueMetricsCertDir, fmt.Sprintf(".%s.%d", name, os.Getpid()))
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fail(err)
		}
		if err := os.Rename(tmp, filepath.Join(kueueMetricsCertDir, name)); err != nil {
			return fail(err)
		}
	}
	return nil
}

// copyFiles copies the named files from one directory to another, which
// it creates.
func copyFiles(from, to string, names ...string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
