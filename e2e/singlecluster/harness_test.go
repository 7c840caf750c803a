package singlecluster_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/spoke"
	spokewebhook "github.com/jobset-fleet/jobset-fleet/spoke/webhook"
)

// The identity the in-process controller runs as: the agent's ServiceAccount,
// bound to the agent's generated RBAC (config/rbac/agent). The manager
// impersonates it, so a permission missing from the generated role fails
// these tests the way it would fail a real deployment.
const (
	systemNamespace    = "jobset-fleet-system"
	serviceAccountName = "jobset-fleet-agent"
	roleName           = "jobset-fleet-agent"
)

// rack describes the fake nodes every test cluster gets: 4 racks of 2 nodes.
var racks = []string{"r0", "r1", "r2", "r3"}

const nodesPerRack = 2

// kwokEnv is a kwok cluster with the JobSet CRDs, the webhooks and the JobSet
// controller installed.
type kwokEnv struct {
	cluster *testenv.KwokCluster
	// c is an uncached admin client: what a user sees.
	c client.WithWatch
	// logDir holds the controller's log (controller.log).
	logDir  string
	workDir string

	cancel context.CancelFunc
	done   chan struct{}
}

// startKwokEnv creates the cluster and installs everything. On error it
// tears down what it started.
func startKwokEnv(ctx context.Context, name string) (_ *kwokEnv, err error) {
	root := testenv.RepoRoot()
	workDir, err := os.MkdirTemp("", "e2e-"+name+"-")
	if err != nil {
		return nil, err
	}
	e := &kwokEnv{workDir: workDir, logDir: filepath.Join(workDir, "logs"), done: make(chan struct{})}
	close(e.done) // until a manager runs
	defer func() {
		if err != nil {
			e.saveClusterLogs()
			err = fmt.Errorf("%w (logs in %s)", err, e.logDir)
			e.stop(context.Background())
		}
	}()
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		return nil, err
	}
	if err := setLogger(filepath.Join(e.logDir, "controller.log")); err != nil {
		return nil, err
	}

	createCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	e.cluster, err = testenv.CreateKwokCluster(createCtx, name, testenv.KwokOptions{
		WorkDir:   filepath.Join(workDir, "kwok"),
		ExtraArgs: []string{"--config=" + filepath.Join(root, "e2e", "kwok", "stages.yaml")},
	})
	if err != nil {
		return nil, err
	}
	if e.c, err = client.NewWithWatch(e.cluster.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return nil, err
	}
	if err := e.addRacks(ctx); err != nil {
		return nil, fmt.Errorf("adding nodes: %w", err)
	}
	if err := e.installCRDs(ctx); err != nil {
		return nil, err
	}
	if err := e.installRBAC(ctx); err != nil {
		return nil, err
	}
	bundle, err := issueServingCert()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := e.startController(ctx, port, bundle); err != nil {
		return nil, err
	}
	if err := e.installWebhooks(ctx, port, bundle.CACerts); err != nil {
		return nil, err
	}
	return e, nil
}

// stop stops the controller, saves the cluster's component logs next to the
// controller's when keepLogs, and deletes the cluster.
func (e *kwokEnv) stop(ctx context.Context) {
	if e.cancel != nil {
		e.cancel()
	}
	<-e.done
	if e.cluster != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := e.cluster.Delete(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// saveClusterLogs copies the logs of the cluster's components (apiserver,
// scheduler, controller-manager, kwok) into logDir, so they outlive the
// cluster when a test failed.
func (e *kwokEnv) saveClusterLogs() {
	if e.cluster == nil {
		return
	}
	src := filepath.Join(e.workDir, "kwok", "clusters", e.cluster.Name, "logs")
	entries, err := os.ReadDir(src)
	if err != nil {
		fmt.Fprintf(os.Stderr, "saving kwok logs: %v\n", err)
		return
	}
	for _, entry := range entries {
		data, err := os.ReadFile(filepath.Join(src, entry.Name()))
		if err == nil {
			_ = os.WriteFile(filepath.Join(e.logDir, entry.Name()), data, 0o644)
		}
	}
}

// addRacks adds nodesPerRack kwok nodes to each rack (node label rack=<r>).
func (e *kwokEnv) addRacks(ctx context.Context) error {
	resources, err := testenv.ParseResources("cpu=8,memory=32Gi")
	if err != nil {
		return err
	}
	for _, r := range racks {
		for i := range nodesPerRack {
			name := fmt.Sprintf("rack-%s-%d", r, i)
			if err := testenv.AddNode(ctx, e.c, name, testenv.NodeSpec{Labels: map[string]string{"rack": r}, Resources: resources}); err != nil {
				return err
			}
		}
	}
	// Wait until the scheduler can use every node: Ready and schedulable.
	var notReady []string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var nodes corev1.NodeList
		if err := e.c.List(ctx, &nodes, client.HasLabels{"rack"}); err != nil {
			notReady = []string{err.Error()}
			return false, nil
		}
		notReady = nil
		for _, n := range nodes.Items {
			ready := slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
				return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
			})
			if !ready || n.Status.Allocatable.Cpu().Value() != 8 {
				notReady = append(notReady, fmt.Sprintf("%s(ready=%t cpu=%s)", n.Name, ready, n.Status.Allocatable.Cpu()))
			}
		}
		return len(nodes.Items) == len(racks)*nodesPerRack && len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("nodes not ready: %w: %v", err, notReady)
	}
	return nil
}

// installCRDs applies config/crd/bases with kubectl, server-side as the
// README says (the JobSet CRD is too large for client-side apply), and waits
// until the CRDs are served.
func (e *kwokEnv) installCRDs(ctx context.Context) error {
	dir := filepath.Join(testenv.RepoRoot(), "config", "crd", "bases")
	if out, err := e.kubectl(ctx, "apply", "--server-side", "-f", dir); err != nil {
		return fmt.Errorf("kubectl apply CRDs: %w\n%s", err, out)
	}
	// Polled rather than `kubectl wait`, which fails outright when it looks
	// before the apiserver has written any condition.
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range []string{"jobsets.jobset.x-k8s.io", "jobsetdispatches.fleet.jobset.x-k8s.io"} {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := e.c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				last = err.Error()
				return false, nil
			}
			established := slices.ContainsFunc(crd.Status.Conditions, func(c apiextensionsv1.CustomResourceDefinitionCondition) bool {
				return c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
			})
			if !established {
				last = name + " not Established"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRDs: %w (%s)", err, last)
	}
	return nil
}

// installRBAC creates the agent's ServiceAccount and binds it to the
// agent's generated roles.
func (e *kwokEnv) installRBAC(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}
	if err := e.c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: serviceAccountName}}
	if err := e.c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	roles := filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent", "role.yaml")
	if out, err := e.kubectl(ctx, "apply", "--server-side", "-f", roles); err != nil {
		return fmt.Errorf("kubectl apply agent RBAC: %w\n%s", err, out)
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: systemNamespace, Name: serviceAccountName}
	bindings := []client.Object{
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: roleName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roleName},
			Subjects:   []rbacv1.Subject{subject},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: roleName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: roleName},
			Subjects:   []rbacv1.Subject{subject},
		},
	}
	for _, b := range bindings {
		if err := e.c.Create(ctx, b); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// servingCert is a serving pair and the CA bundle that trusts it.
type servingCert struct{ Cert, Key, CACerts []byte }

// issueServingCert makes a CA and a serving certificate for 127.0.0.1, where
// the kwok apiserver (a host process) reaches the in-process webhook server.
func issueServingCert() (*servingCert, error) {
	// The certificate PEM holds the serving certificate and its CA.
	cert, key, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return nil, err
	}
	return &servingCert{Cert: cert, Key: key, CACerts: cert}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startController runs, in this process, what the agent runs in a member
// cluster: a manager with the JobSet reconciler and the spoke webhooks,
// authenticated as the agent's ServiceAccount.
func (e *kwokEnv) startController(ctx context.Context, port int, bundle *servingCert) error {
	certDir := filepath.Join(e.workDir, "serving-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"tls.crt": bundle.Cert, "tls.key": bundle.Key} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return err
		}
	}
	cfg := rest.CopyConfig(e.cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", systemNamespace, serviceAccountName),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"},
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    "127.0.0.1",
			Port:    port,
			CertDir: certDir,
		}),
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if _, err := spoke.Setup(mgr, spoke.DefaultOptions()); err != nil {
		return err
	}
	if err := spokewebhook.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	mgrCtx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		if err := mgr.Start(mgrCtx); err != nil {
			fmt.Fprintf(os.Stderr, "controller manager stopped: %v\n", err)
		}
	}()

	// Serving, with the certificate the apiserver will verify.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle.CACerts) {
		return errors.New("no CA certificate in the bundle")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var dialErr error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			dialErr = err
			return false, nil
		}
		return true, conn.Close()
	})
	if err != nil {
		return fmt.Errorf("webhook server at %s not serving: %v (last error: %v)", addr, err, dialErr)
	}
	return nil
}

// installWebhooks installs config/webhook/manifests.yaml with every
// clientConfig pointing at https://127.0.0.1:<port><path> and trusting caPEM,
// then waits until the apiserver calls both the mutating and the validating
// JobSet webhooks.
func (e *kwokEnv) installWebhooks(ctx context.Context, port int, caPEM []byte) error {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	if err != nil {
		return err
	}
	decoder := serializer.NewCodecFactory(testenv.Scheme()).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	url := func(cc *admissionregistrationv1.WebhookClientConfig) error {
		if cc.Service == nil || cc.Service.Path == nil {
			return fmt.Errorf("webhook clientConfig without a service path: %+v", cc)
		}
		cc.URL = ptr.To(fmt.Sprintf("https://127.0.0.1:%d%s", port, *cc.Service.Path))
		cc.Service = nil
		cc.CABundle = caPEM
		return nil
	}
	installed := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("decoding webhook manifest: %w", err)
		}
		switch cfg := obj.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for i := range cfg.Webhooks {
				if err := url(&cfg.Webhooks[i].ClientConfig); err != nil {
					return err
				}
			}
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for i := range cfg.Webhooks {
				if err := url(&cfg.Webhooks[i].ClientConfig); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("unexpected %T in the webhook manifests", obj)
		}
		if err := e.c.Create(ctx, obj.(client.Object)); err != nil {
			return fmt.Errorf("creating webhook configuration: %w", err)
		}
		installed++
	}
	if installed != 2 {
		return fmt.Errorf("installed %d webhook configurations, want 2", installed)
	}
	return e.waitForWebhooks(ctx)
}

// waitForWebhooks waits until the apiserver uses both webhook
// configurations: a dry-run JobSet comes back defaulted (mutating), and an
// invalid one is rejected with the webhook's field error (validating).
func (e *kwokEnv) waitForWebhooks(ctx context.Context) error {
	probe := func(name string) *jobset.JobSet {
		return jstesting.MakeJobSet("default", name).
			ReplicatedJob(jstesting.MakeReplicatedJob("w").Replicas(1).Container("c", "busybox").Obj()).
			Obj()
	}
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		good := probe("webhook-probe")
		if err := e.c.Create(ctx, good, client.DryRunAll); err != nil {
			last = fmt.Sprintf("dry-run create: %v", err)
			return false, nil
		}
		if good.Spec.SuccessPolicy == nil {
			last = "dry-run JobSet was not defaulted by the mutating webhook"
			return false, nil
		}
		bad := probe("webhook-probe-invalid")
		bad.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "missing"}
		err := e.c.Create(ctx, bad, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "coordinator replicatedJob missing does not exist") {
			last = fmt.Sprintf("invalid dry-run JobSet: got %v, want the validating webhook's error", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("webhooks not in effect: %v (%s)", err, last)
	}
	return nil
}

// kubectl runs bin/kubectl against the cluster.
func (e *kwokEnv) kubectl(ctx context.Context, args ...string) (string, error) {
	bin, err := testenv.Binary("kubectl")
	if err != nil {
		return "", err
	}
	args = append([]string{"--kubeconfig", e.cluster.KubeconfigPath, "--context", e.cluster.Context}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = testenv.RepoRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("kubectl %s: %w", strings.Join(args[4:], " "), err)
	}
	return stdout.String(), nil
}
