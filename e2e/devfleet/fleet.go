package devfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/fence/fencetest"
)

// HubNamespace is the hub's own namespace (cmd/hub's --namespace).
const HubNamespace = "jobset-fleet-system"

// Options configure Up and Down.
type Options struct {
	// Dir holds everything of the fleet: kubeconfigs, logs, pid files,
	// webhook certificates and kwokctl's state. Down removes it.
	Dir string
	// PortBase is the first of the local processes' ports: the hub's
	// metrics, probe and webhook ports, then 10 per agent from PortBase+20.
	PortBase int
	// Detach leaves the hub and the agents running when this process exits
	// (make dev-up); otherwise they die with it.
	Detach bool
	// Progress receives one line per step.
	Progress io.Writer
}

// Fleet is a fleet that is up.
type Fleet struct {
	Layout Layout
	// Kubeconfig has a context per cluster, named after it.
	Kubeconfig string
	// Clients are admin clients by cluster name.
	Clients map[string]client.Client

	o       Options
	configs map[string]*rest.Config
	procs   map[string]*testenv.Process
}

func (o Options) path(elem ...string) string {
	return filepath.Join(append([]string{o.Dir}, elem...)...)
}

func (o Options) step(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
	}
}

// The processes' ports.
func (o Options) hubPorts() (metrics, probe, webhook int) {
	return o.PortBase, o.PortBase + 1, o.PortBase + 2
}

func (o Options) agentPorts(i int) (metrics, probe, webhook int) {
	base := o.PortBase + 20 + 10*i
	return base, base + 1, base + 2
}

// Up brings the fleet up: the clusters (kept if they exist), the fake
// nodes, the hub's CRDs, each member joined, the webhook configurations
// pointed at the local processes, and the processes, until they are ready.
// A failed bring-up tears down what it started.
func Up(ctx context.Context, l Layout, o Options) (_ *Fleet, err error) {
	f := &Fleet{Layout: l, Kubeconfig: o.path("kubeconfig"), Clients: map[string]client.Client{}, o: o,
		configs: map[string]*rest.Config{}, procs: map[string]*testenv.Process{}}
	defer func() {
		if err != nil {
			o.step("bring-up failed: tearing down what it started")
			err = errors.Join(err, Down(context.WithoutCancel(ctx), l, o))
		}
	}()
	for _, d := range []string{"logs", "pids", "kwok"} {
		if err := os.MkdirAll(o.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	for _, name := range l.Clusters() {
		if err := f.createCluster(ctx, name); err != nil {
			return nil, err
		}
	}
	for _, m := range l.Members {
		for node, rack := range m.Nodes() {
			err := testenv.AddNode(ctx, f.Clients[m.Name], node, testenv.NodeSpec{Labels: map[string]string{RackLabel: rack}, Resources: NodeResources()})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, err
			}
		}
		o.step("cluster %s: %d fake nodes in %d racks", m.Name, m.Racks*NodesPerRack, m.Racks)
	}
	o.step("installing CRDs on the hub")
	if _, err := envtest.InstallCRDs(f.configs[l.Hub], envtest.CRDInstallOptions{Paths: testenv.CRDPaths(), ErrorIfPathMissing: true, MaxTime: 2 * time.Minute}); err != nil {
		return nil, fmt.Errorf("installing CRDs on the hub: %w", err)
	}
	o.step("installing the policy that keeps agents from changing the hub's access to members")
	if err := fencetest.InstallAccessPolicy(ctx, f.Clients[l.Hub], testenv.RepoRoot()); err != nil {
		return nil, fmt.Errorf("installing the access policy on the hub: %w", err)
	}
	for _, m := range l.Members {
		o.step("joining %s", m.Name)
		if err := f.join(ctx, m.Name); err != nil {
			return nil, err
		}
	}
	o.step("installing admission webhooks (served by the local processes)")
	// The hub keeps its webhook certificate in its own namespace.
	if err := f.Clients[l.Hub].Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: HubNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	_, _, hubWebhook := o.hubPorts()
	manifests := func(dir string) string { return filepath.Join(testenv.RepoRoot(), "config", dir, "manifests.yaml") }
	if err := testenv.InstallLocalWebhooks(ctx, f.Clients[l.Hub], manifests("hub-webhook"), hubWebhook); err != nil {
		return nil, err
	}
	for i, m := range l.Members {
		_, _, port := o.agentPorts(i)
		if err := testenv.InstallLocalWebhooks(ctx, f.Clients[m.Name], manifests("webhook"), port); err != nil {
			return nil, err
		}
	}
	o.step("starting the hub and the agents")
	if err := f.startProcesses(); err != nil {
		return nil, err
	}
	o.step("waiting for the hub and the agents to be ready")
	if err := f.waitReady(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// createCluster creates a kwok cluster, or reuses one of that name, and
// writes its context, named after it, to the fleet's kubeconfig and its own
// kubeconfig file (<name>.kubeconfig).
func (f *Fleet) createCluster(ctx context.Context, name string) error {
	opts := f.o.kwokOptions()
	opts.ExtraArgs = []string{"--config=" + filepath.Join(testenv.RepoRoot(), "e2e", "kwok", "stages.yaml")}
	k, err := testenv.KwokClusterIn(name, opts)
	if err != nil {
		f.o.step("cluster %s: creating (kwok, binary runtime)", name)
		if k, err = testenv.CreateKwokCluster(ctx, name, opts); err != nil {
			return err
		}
	} else {
		f.o.step("cluster %s: already exists", name)
	}
	f.Clients[name], f.configs[name] = k.Client, k.Config
	return f.writeKubeconfigs(name, k.Context)
}

// kwokOptions put kwokctl's state and kubeconfig in the fleet's directory.
func (o Options) kwokOptions() testenv.KwokOptions {
	return testenv.KwokOptions{WorkDir: o.path("kwok"), KubeconfigPath: o.path("kwok", "kubeconfig")}
}

func (f *Fleet) writeKubeconfigs(name, kwokContext string) error {
	all, err := clientcmd.LoadFromFile(f.o.path("kwok", "kubeconfig"))
	if err != nil {
		return err
	}
	one := all.DeepCopy()
	one.Contexts = map[string]*clientcmdapi.Context{name: all.Contexts[kwokContext]}
	if one.Contexts[name] == nil {
		return fmt.Errorf("no context %s in kwokctl's kubeconfig", kwokContext)
	}
	one.CurrentContext = name
	if err := clientcmdapi.MinifyConfig(one); err != nil {
		return err
	}
	if err := clientcmdapi.FlattenConfig(one); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(*one, f.o.path(name+".kubeconfig")); err != nil {
		return err
	}
	merged, err := clientcmd.LoadFromFile(f.Kubeconfig)
	if err != nil {
		if !os.IsNotExist(err) {
			return err
		}
		merged = clientcmdapi.NewConfig()
	}
	merged.Clusters[name] = one.Clusters[one.Contexts[name].Cluster]
	merged.AuthInfos[name] = one.AuthInfos[one.Contexts[name].AuthInfo]
	ctx := one.Contexts[name].DeepCopy()
	ctx.Cluster, ctx.AuthInfo = name, name
	merged.Contexts[name] = ctx
	if merged.CurrentContext == "" {
		merged.CurrentContext = name
	}
	return clientcmd.WriteToFile(*merged, f.Kubeconfig)
}

// join runs `jobset-fleet-agent join`, as a user would.
func (f *Fleet) join(ctx context.Context, member string) error {
	bin, err := testenv.Binary("jobset-fleet-agent")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "join",
		"--hub-kubeconfig", f.o.path(f.Layout.Hub+".kubeconfig"),
		"--member-kubeconfig", f.o.path(member+".kubeconfig"),
		"--cluster-name", member, "--labels", "fleet.jobset.x-k8s.io/member="+member,
		"--output-kubeconfig", f.o.path(member+"-agent-hub.kubeconfig"))
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(f.o.path("logs", "join-"+member+".log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("join %s: %w\n%s", member, err, out)
	}
	return nil
}

// processes are the hub's and the agents' names, binaries and flags.
func (f *Fleet) processes() map[string][]string {
	o := f.o
	metrics, probe, webhook := o.hubPorts()
	common := func(kubeconfig string, metrics, probe, webhook int, certs string) []string {
		return []string{
			"--kubeconfig", kubeconfig, "--leader-elect=false",
			"--webhook-port", strconv.Itoa(webhook), "--webhook-cert-dir", o.path("certs", certs),
			"--webhook-cert-extra-dns-names", "localhost",
			"--metrics-bind-address", ":" + strconv.Itoa(metrics), "--health-probe-bind-address", ":" + strconv.Itoa(probe),
		}
	}
	procs := map[string][]string{
		"hub": append([]string{"jobset-fleet-hub"}, common(o.path(f.Layout.Hub+".kubeconfig"), metrics, probe, webhook, "hub")...),
	}
	for i, m := range f.Layout.Members {
		metrics, probe, webhook := o.agentPorts(i)
		procs["agent-"+m.Name] = append(append([]string{"jobset-fleet-agent"}, common(o.path(m.Name+".kubeconfig"), metrics, probe, webhook, "agent-"+m.Name)...),
			"--hub-kubeconfig", o.path(m.Name+"-agent-hub.kubeconfig"), "--cluster-name", m.Name,
			"--topology-keys", RackLabel+",kubernetes.io/hostname")
	}
	return procs
}

func (f *Fleet) startProcesses() error {
	for name, args := range f.processes() {
		bin, err := testenv.Binary(args[0])
		if err != nil {
			return err
		}
		logPath := f.o.path("logs", name+".log")
		var p *testenv.Process
		if f.o.Detach {
			p, err = testenv.StartDaemon(name, logPath, bin, args[1:])
		} else {
			p, err = testenv.StartProcess(name, logPath, bin, args[1:], nil)
		}
		if err != nil {
			return err
		}
		f.procs[name] = p
		if err := os.WriteFile(f.o.path("pids", name), []byte(strconv.Itoa(p.Pid())), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits until every process serves its readiness probe (its
// webhooks with a certificate the apiservers trust); a process that exits
// fails the bring-up with its log.
func (f *Fleet) waitReady(ctx context.Context) error {
	probes := map[string]int{}
	_, probes["hub"], _ = f.o.hubPorts()
	for i, m := range f.Layout.Members {
		_, probes["agent-"+m.Name], _ = f.o.agentPorts(i)
	}
	for name, port := range probes {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if f.procs[name].Exited() != nil {
				return fmt.Errorf("%s exited; its log:\n%s", name, testenv.Tail(f.o.path("logs", name+".log"), 20))
			}
			err := get(ctx, url)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after 2m: %w; its log:\n%s", name, err, testenv.Tail(f.o.path("logs", name+".log"), 20))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

func get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// Wait returns when ctx ends or a process exits (make run); it is only for
// a fleet that is not detached.
func (f *Fleet) Wait(ctx context.Context) error {
	done := make(chan string, len(f.procs))
	for name, p := range f.procs {
		go func() {
			<-p.Done()
			done <- name
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case name := <-done:
		return fmt.Errorf("%s exited; its log:\n%s", name, testenv.Tail(f.o.path("logs", name+".log"), 20))
	}
}

// Down stops the processes, deletes the clusters and removes Dir. It
// finds everything from Dir, so it works from another process than Up's,
// and after a failed Up.
func Down(ctx context.Context, l Layout, o Options) error {
	o.step("stopping the hub and the agents")
	pidFiles, _ := filepath.Glob(o.path("pids", "*"))
	var pids []int
	for _, file := range pidFiles {
		if pid, err := readPid(file); err == nil {
			pids = append(pids, pid)
		}
	}
	// They shut down gracefully; the clusters they talk to go only after.
	testenv.Terminate(pids, 15*time.Second)
	var errs []error
	for _, name := range l.Clusters() {
		k, err := testenv.KwokClusterIn(name, o.kwokOptions())
		if err != nil {
			continue // never created
		}
		o.step("cluster %s: deleting", name)
		if err := k.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// kwokctl delete does not always stop every component it started (seen:
	// a kube-apiserver and kwok-controller outliving it): whatever still
	// runs from the fleet's directory goes too, before the directory does.
	if n := testenv.KillUnder(o.Dir); n > 0 {
		o.step("stopped %d leftover processes of the fleet", n)
	}
	errs = append(errs, os.RemoveAll(o.Dir))
	return errors.Join(errs...)
}
