package devfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	// 0: free ports the kernel picks.
	PortBase int
	// Detach leaves the hub and the agents running when this process exits
	// (make dev-up); otherwise they die with it.
	Detach bool
	// Progress receives one line per step.
	Progress io.Writer

	// What the benchmark (e2e/bench) changes; the zero values are the
	// local fleet of make dev-up.

	// Clusters makes one cluster of the fleet; nil: kwok clusters with
	// state in Dir, kept if they exist.
	Clusters func(ctx context.Context, name string) (Cluster, error)
	// Connect returns the kubeconfig a process (hub, agent-<member>) uses
	// to reach a cluster, given the one it would use and the cluster's
	// admin config; nil: that one. close (may be nil) runs after the
	// processes stopped, before the clusters do.
	Connect func(process, cluster string, target *rest.Config, kubeconfig string) (path string, closeConnection func(), err error)
	// ExtraArgs go to every process after its own flags.
	ExtraArgs []string
	// Kueue installs Kueue (the version hack/kueue pins) on the hub or on
	// every member and runs its manager, bin/kueue-manager, there (make run
	// KUEUE=hub|members); "": no Kueue.
	Kueue KueueOn
}

// Cluster is one cluster of the fleet as Options.Clusters makes it.
type Cluster struct {
	Config *rest.Config
	Client client.Client
	// Kubeconfig is an admin kubeconfig file; Context its context in it
	// ("": the current one).
	Kubeconfig, Context string
	// Stop stops the cluster with the fleet (Fleet.Stop); nil for a
	// cluster that outlives this process (Down deletes it).
	Stop func()
}

// ports are one process's local ports.
type ports struct{ metrics, probe, webhook, relay int }

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
	ports   map[string]ports
	stops   []func() // clusters' Stop, in start order
	closes  []func() // Connect's
	kueues  []*testenv.Kueue
}

func (o Options) path(elem ...string) string {
	return filepath.Join(append([]string{o.Dir}, elem...)...)
}

func (o Options) step(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
	}
}

// assignPorts gives each process its ports: from PortBase, or, when it
// is 0, free ones the kernel picks.
func (f *Fleet) assignPorts() error {
	at := func(base int) ports { return ports{base, base + 1, base + 2, base + 3} }
	if f.o.PortBase != 0 {
		f.ports["hub"] = at(f.o.PortBase)
		for i, m := range f.Layout.Members {
			f.ports["agent-"+m.Name] = at(f.o.PortBase + 20 + 10*i)
		}
		return nil
	}
	for _, name := range f.processNames() {
		var p [4]int
		for i := range p {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			p[i] = ln.Addr().(*net.TCPAddr).Port
			defer ln.Close() // held until all are picked: no port twice
		}
		f.ports[name] = ports{p[0], p[1], p[2], p[3]}
	}
	return nil
}

// processNames are the hub's, then each agent's.
func (f *Fleet) processNames() []string {
	names := []string{"hub"}
	for _, m := range f.Layout.Members {
		names = append(names, "agent-"+m.Name)
	}
	return names
}

// Up brings the fleet up: the clusters (kept if they exist), the fake
// nodes, the hub's CRDs, each member joined, the webhook configurations
// pointed at the local processes, and the processes, until they are ready.
// A failed bring-up tears down what it started.
func Up(ctx context.Context, l Layout, o Options) (_ *Fleet, err error) {
	f := &Fleet{Layout: l, Kubeconfig: o.path("kubeconfig"), Clients: map[string]client.Client{}, o: o,
		configs: map[string]*rest.Config{}, procs: map[string]*testenv.Process{}, ports: map[string]ports{}}
	defer func() {
		if err != nil {
			o.step("bring-up failed: tearing down what it started")
			f.Stop()
			if o.Clusters == nil { // kwok clusters and state in Dir outlive f.Stop
				err = errors.Join(err, Down(context.WithoutCancel(ctx), l, o))
			}
		}
	}()
	if err := f.assignPorts(); err != nil {
		return nil, err
	}
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
	if err := testenv.InstallAccessPolicy(ctx, f.Clients[l.Hub], testenv.RepoRoot()); err != nil {
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
	manifests := func(dir string) string { return filepath.Join(testenv.RepoRoot(), "config", dir, "manifests.yaml") }
	if err := testenv.InstallLocalWebhooks(ctx, f.Clients[l.Hub], manifests("hub-webhook"), f.ports["hub"].webhook); err != nil {
		return nil, err
	}
	for _, m := range l.Members {
		if err := testenv.InstallLocalWebhooks(ctx, f.Clients[m.Name], manifests("webhook"), f.ports["agent-"+m.Name].webhook); err != nil {
			return nil, err
		}
	}
	if o.Clusters == nil { // kwok clusters, made for the relay (relay.go)
		if err := installRelay(ctx, f.Clients[l.Hub], f.ports["hub"].relay); err != nil {
			return nil, err
		}
	}
	o.step("starting the hub and the agents")
	if err := f.startProcesses(ctx); err != nil {
		return nil, err
	}
	o.step("waiting for the hub and the agents to be ready")
	if err := f.waitReady(ctx); err != nil {
		return nil, err
	}
	if o.Kueue != "" {
		o.step("installing Kueue and starting its manager on %s", strings.Join(f.kueueClusters(), ", "))
		if err := f.startKueue(ctx); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// createCluster creates a kwok cluster, or reuses one of that name, and
// writes its context, named after it, to the fleet's kubeconfig and its own
// kubeconfig file (<name>.kubeconfig).
func (f *Fleet) createCluster(ctx context.Context, name string) error {
	if f.o.Clusters != nil {
		c, err := f.o.Clusters(ctx, name)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		if c.Stop != nil {
			f.stops = append(f.stops, c.Stop)
		}
		f.Clients[name], f.configs[name] = c.Client, c.Config
		return f.writeKubeconfigs(name, c.Kubeconfig, c.Context)
	}
	opts := f.o.kwokOptions()
	opts.ExtraArgs = []string{"--config=" + filepath.Join(testenv.RepoRoot(), "e2e", "kwok", "stages.yaml")}
	relayConfig, err := f.kwokConfig(name) // relay.go
	if err != nil {
		return err
	}
	opts.ExtraArgs = append(opts.ExtraArgs, "--config="+relayConfig)
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
	return f.writeKubeconfigs(name, f.o.path("kwok", "kubeconfig"), k.Context)
}

// kwokOptions put kwokctl's state and kubeconfig in the fleet's directory.
func (o Options) kwokOptions() testenv.KwokOptions {
	return testenv.KwokOptions{WorkDir: o.path("kwok"), KubeconfigPath: o.path("kwok", "kubeconfig")}
}

// writeKubeconfigs copies context srcContext ("": the current one) of the
// kubeconfig file src to <name>.kubeconfig and the fleet's kubeconfig.
func (f *Fleet) writeKubeconfigs(name, src, srcContext string) error {
	all, err := clientcmd.LoadFromFile(src)
	if err != nil {
		return err
	}
	if srcContext == "" {
		srcContext = all.CurrentContext
	}
	one := all.DeepCopy()
	one.Contexts = map[string]*clientcmdapi.Context{name: all.Contexts[srcContext]}
	if one.Contexts[name] == nil {
		return fmt.Errorf("no context %s in %s", srcContext, src)
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
		"--output-kubeconfig", f.o.path(member+"-agent-hub.kubeconfig"),
		// The agents run as local processes, which reach the hub on loopback.
		"--allow-loopback-hub-server")
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(f.o.path("logs", "join-"+member+".log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("join %s: %w\n%s", member, err, out)
	}
	return nil
}

// processes are the hub's and the agents' names, binaries and flags.
func (f *Fleet) processes(ctx context.Context) (map[string][]string, error) {
	o := f.o
	// connect is the kubeconfig process uses for cluster.
	connect := func(process, cluster, kubeconfig string) (string, error) {
		if o.Connect == nil {
			return kubeconfig, nil
		}
		path, closeFn, err := o.Connect(process, cluster, f.configs[cluster], kubeconfig)
		if err != nil {
			return "", fmt.Errorf("connecting %s to %s: %w", process, cluster, err)
		}
		if closeFn != nil {
			f.closes = append(f.closes, closeFn)
		}
		return path, nil
	}
	common := func(name, kubeconfig string) []string {
		p := f.ports[name]
		return []string{
			"--kubeconfig", kubeconfig, "--leader-elect=false",
			"--webhook-port", strconv.Itoa(p.webhook), "--webhook-cert-dir", o.path("certs", name),
			"--webhook-cert-extra-dns-names", "localhost",
			"--metrics-bind-address", ":" + strconv.Itoa(p.metrics), "--health-probe-bind-address", ":" + strconv.Itoa(p.probe),
		}
	}
	hubKubeconfig, err := connect("hub", f.Layout.Hub, o.path(f.Layout.Hub+".kubeconfig"))
	if err != nil {
		return nil, err
	}
	hubArgs := append([]string{"jobset-fleet-hub"}, common("hub", hubKubeconfig)...)
	if o.Clusters == nil { // kwok clusters, made for the relay (relay.go)
		hubArgs = append(hubArgs, "--relay-bind-address", "127.0.0.1:"+strconv.Itoa(f.ports["hub"].relay), "--relay-cert-dir", o.path("certs", "hub"))
	}
	procs := map[string][]string{
		"hub": append(hubArgs, o.ExtraArgs...),
	}
	for _, m := range f.Layout.Members {
		name := "agent-" + m.Name
		memberKubeconfig, err := connect(name, m.Name, o.path(m.Name+".kubeconfig"))
		if err != nil {
			return nil, err
		}
		hubKubeconfig, err := connect(name, f.Layout.Hub, o.path(m.Name+"-agent-hub.kubeconfig"))
		if err != nil {
			return nil, err
		}
		args := append([]string{"jobset-fleet-agent"}, common(name, memberKubeconfig)...)
		args = append(args, "--hub-kubeconfig", hubKubeconfig, "--cluster-name", m.Name,
			"--topology-keys", RackLabel+",kubernetes.io/hostname")
		procs[name] = append(args, o.ExtraArgs...)
	}
	return procs, ctx.Err()
}

func (f *Fleet) startProcesses(ctx context.Context) error {
	procs, err := f.processes(ctx)
	if err != nil {
		return err
	}
	for name, args := range procs {
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
	for _, name := range f.processNames() {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", f.ports[name].probe)
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if f.procs[name].Exited() != nil {
				return fmt.Errorf("%s exited; its log:\n%s", name, testenv.Tail(f.o.path("logs", name+".log"), 20))
			}
			err := get(ctx, url)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after 3m: %w; its log:\n%s", name, err, testenv.Tail(f.o.path("logs", name+".log"), 20))
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

// Processes are the hub's and the agents' processes, hub first, then
// Kueue's managers if they run.
func (f *Fleet) Processes() []*testenv.Process {
	var out []*testenv.Process
	for _, name := range append(f.processNames(), f.kueueProcesses()...) {
		if p := f.procs[name]; p != nil {
			out = append(out, p)
		}
	}
	return out
}

// Exited is the first process's exit, or nil while all run.
func (f *Fleet) Exited() error {
	for _, p := range f.Processes() {
		if err := p.Exited(); err != nil {
			return fmt.Errorf("%s: %w; its log:\n%s", p.Name, err, testenv.Tail(p.LogPath, 20))
		}
	}
	return nil
}

// Stop stops what this process started: the hub and the agents, then
// what Connect set up, then the clusters Options.Clusters made, in
// reverse (an apiserver with clients still watching takes minutes to shut
// down). It keeps Dir (the logs) and kwok clusters; Down removes them.
func (f *Fleet) Stop() {
	for _, p := range f.Processes() {
		p.Stop()
	}
	for _, k := range f.kueues {
		k.Stop()
	}
	for _, c := range slices.Backward(f.closes) {
		c()
	}
	for _, s := range slices.Backward(f.stops) {
		s()
	}
	f.procs, f.closes, f.stops, f.kueues = map[string]*testenv.Process{}, nil, nil, nil
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
