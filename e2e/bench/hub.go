package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

var memberNames = []string{"member-1", "member-2"}

// hubPhase is one submission pattern of the hub scenario.
type hubPhase struct {
	name string
	n    int
	rate float64 // offered JobSets/s; 0: a burst (50 concurrent creates)

	submitRate float64 // achieved: n / (first → last submit)
	throughput float64 // completed / (first submit → last completion)
	completed  int
	latencies  []time.Duration // sorted
	p50, p99   time.Duration
	max        time.Duration
	perMember  map[string]int

	// Requests by process and apiserver, first submit → quiet.
	hubByHub, hubByAgents, memberByAgents counts
	// Of those, the requests answered with an error.
	failedHub, failedAgentsHub, failedMember counts
	hubAPIServerCPU                          time.Duration
	profiles                                 map[string]string // process → top of its CPU profile
	load                                     string
}

func (p *hubPhase) hubWrites() int64 {
	_, a := p.hubByHub.total()
	_, b := p.hubByAgents.total()
	return a + b
}

func (p *hubPhase) memberWrites() int64 {
	_, w := p.memberByAgents.total()
	return w
}

func (p *hubPhase) spreadString() string {
	var parts []string
	for _, m := range memberNames {
		parts = append(parts, strconv.Itoa(p.perMember[m]))
	}
	return strings.Join(parts, "/")
}

type hubResult struct {
	phases []hubPhase
}

// hubFleet is the running fleet of the hub scenario.
type hubFleet struct {
	hub     *cluster
	members map[string]*cluster
	// proxies: the hub process → hub; each agent → hub; each agent → its
	// member.
	hubProxy          *countingProxy
	agentHubProxies   []*countingProxy
	agentMemberProxes []*countingProxy
	procs             []*testenv.Process
	cleanups          []func()

	mu         sync.Mutex
	submitted  map[string]time.Time // "<ns>/<name>" → create call started
	completed  map[string]time.Time // → 4 Jobs and the Service seen
	placedOn   map[string]string    // → member
	duplicates []string             // JobSets seen complete on two members
}

// controlPlanes are the hub's and the members' clusters by name.
func (f *hubFleet) controlPlanes() map[string]*cluster {
	out := map[string]*cluster{"hub": f.hub}
	for name, c := range f.members {
		out[name] = c
	}
	return out
}

func (f *hubFleet) onComplete(member string) func(key string, at time.Time) {
	return func(key string, at time.Time) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if prev, ok := f.placedOn[key]; ok && prev != member {
			f.duplicates = append(f.duplicates, key+" on "+prev+" and "+member)
			return
		}
		f.placedOn[key] = member
		f.completed[key] = at
	}
}

func (f *hubFleet) onSubmit(ns string) func(name string, at time.Time) {
	return func(name string, at time.Time) {
		f.mu.Lock()
		f.submitted[ns+"/"+name] = at
		f.mu.Unlock()
	}
}

func (f *hubFleet) onCleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *hubFleet) cleanup() {
	for _, fn := range slices.Backward(f.cleanups) {
		fn()
	}
}

// startProc starts a process of the fleet, stopped at cleanup.
func (f *hubFleet) startProc(name, logPath, bin string, args []string) (*testenv.Process, error) {
	p, err := testenv.StartProcess(name, logPath, bin, args, nil)
	if err != nil {
		return nil, err
	}
	f.procs = append(f.procs, p)
	f.onCleanup(p.Stop)
	return p, nil
}

// startProxy starts a counting proxy in front of cfg's apiserver, closed at
// cleanup.
func (f *hubFleet) startProxy(cfg *rest.Config, cert *servingCert) (*countingProxy, error) {
	p, err := startCountingProxy(cfg, cert)
	if err != nil {
		return nil, err
	}
	f.onCleanup(p.close)
	return p, nil
}

func (f *hubFleet) exited() error {
	for _, p := range f.procs {
		if err := p.Exited(); err != nil {
			return err
		}
	}
	return nil
}

// runHub brings up the fleet and runs the burst, then each offered rate.
func runHub(ctx context.Context, o options, bins benchBins, cert *servingCert) (*hubResult, error) {
	res := &hubResult{}
	dir, err := os.MkdirTemp(o.workDir, "hub-")
	if err != nil {
		return res, err
	}
	logf("hub: starting the hub and 2 member clusters (load %s)", loadAverage())
	f := &hubFleet{members: map[string]*cluster{}, submitted: map[string]time.Time{}, completed: map[string]time.Time{}, placedOn: map[string]string{}}
	// Everything started is stopped in reverse order: processes before
	// the proxies before the apiservers they talk to (an apiserver with
	// clients still watching takes minutes to shut down).
	defer f.cleanup()
	if f.hub, err = startCluster("hub"); err != nil {
		return res, err
	}
	f.onCleanup(f.hub.stop)
	for _, m := range memberNames {
		c, err := startCluster(m)
		if err != nil {
			return res, err
		}
		f.onCleanup(c.stop)
		f.members[m] = c
	}
	if err := f.start(ctx, dir, bins, cert, o.oursArgs); err != nil {
		return res, err
	}
	for _, m := range memberNames {
		tr, err := startChildTracker(ctx, m, f.members[m].Config, "", 0, f.onComplete(m))
		if err != nil {
			return res, err
		}
		f.onCleanup(tr.stop)
	}
	if err := f.warmUp(ctx); err != nil {
		return res, err
	}

	phases := []hubPhase{{name: "burst", n: o.hubN}}
	for _, r := range o.rates {
		phases = append(phases, hubPhase{name: fmt.Sprintf("%.0f/s", r), n: max(1, int(r*o.rateFor.Seconds())), rate: r})
	}
	for _, ph := range phases {
		if err := f.runPhase(ctx, o, &ph); err != nil {
			return res, fmt.Errorf("%s: %w", ph.name, err)
		}
		res.phases = append(res.phases, ph)
	}
	return res, nil
}

// start joins the members, installs the webhook configurations (pointing
// at the local processes) and starts the hub and the agents, each talking
// to its apiservers through its own counting proxy.
func (f *hubFleet) start(ctx context.Context, dir string, bins benchBins, cert *servingCert, extra []string) error {
	root := testenv.RepoRoot()
	hubWebhookPort, err := freePort()
	if err != nil {
		return err
	}
	if err := createNamespace(ctx, f.hub.Client, "jobset-fleet-system"); err != nil {
		return err
	}
	if err := testenv.InstallLocalWebhooks(ctx, f.hub.Client, filepath.Join(root, "config", "hub-webhook", "manifests.yaml"), hubWebhookPort); err != nil {
		return err
	}
	if f.hubProxy, err = f.startProxy(f.hub.Config, cert); err != nil {
		return err
	}
	hubKubeconfig := filepath.Join(dir, "hub-proxied.kubeconfig")
	if err := f.hubProxy.writeKubeconfig(hubKubeconfig, cert, ""); err != nil {
		return err
	}
	hubProbe, err := freePort()
	if err != nil {
		return err
	}
	hubProc, err := f.startProc("hub", filepath.Join(dir, "hub.log"), bins.hub, append([]string{
		"--kubeconfig=" + hubKubeconfig,
		"--leader-elect=false",
		"--webhook-port=" + strconv.Itoa(hubWebhookPort),
		"--webhook-cert-dir=" + filepath.Join(dir, "certs-hub"),
		"--webhook-cert-extra-dns-names=localhost",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(hubProbe),
	}, extra...))
	if err != nil {
		return err
	}
	probes := map[*testenv.Process]int{hubProc: hubProbe}

	for _, m := range memberNames {
		c := f.members[m]
		joined := filepath.Join(dir, m+"-agent-hub.kubeconfig")
		join := exec.CommandContext(ctx, bins.agent, "join",
			"--hub-kubeconfig="+f.hub.KubeconfigPath, "--member-kubeconfig="+c.KubeconfigPath,
			"--cluster-name="+m, "--output-kubeconfig="+joined)
		join.Dir = root // its --crd-dir default is relative to the checkout
		if out, err := join.CombinedOutput(); err != nil {
			return fmt.Errorf("joining %s: %w\n%s", m, err, out)
		}
		agentWebhookPort, err := freePort()
		if err != nil {
			return err
		}
		if err := testenv.InstallLocalWebhooks(ctx, c.Client, filepath.Join(root, "config", "webhook", "manifests.yaml"), agentWebhookPort); err != nil {
			return err
		}
		memberProxy, err := f.startProxy(c.Config, cert)
		if err != nil {
			return err
		}
		f.agentMemberProxes = append(f.agentMemberProxes, memberProxy)
		memberKubeconfig := filepath.Join(dir, m+"-proxied.kubeconfig")
		if err := memberProxy.writeKubeconfig(memberKubeconfig, cert, ""); err != nil {
			return err
		}
		agentHubProxy, err := f.startProxy(f.hub.Config, cert)
		if err != nil {
			return err
		}
		f.agentHubProxies = append(f.agentHubProxies, agentHubProxy)
		// The agent keeps its own hub identity (the token join made) but
		// reaches the hub through its proxy.
		token, err := tokenOf(joined)
		if err != nil {
			return err
		}
		agentHubKubeconfig := filepath.Join(dir, m+"-agent-hub-proxied.kubeconfig")
		if err := agentHubProxy.writeKubeconfig(agentHubKubeconfig, cert, token); err != nil {
			return err
		}
		probe, err := freePort()
		if err != nil {
			return err
		}
		agent, err := f.startProc("agent-"+m, filepath.Join(dir, "agent-"+m+".log"), bins.agent, append([]string{
			"--kubeconfig=" + memberKubeconfig,
			"--hub-kubeconfig=" + agentHubKubeconfig,
			"--cluster-name=" + m,
			"--leader-elect=false",
			"--webhook-port=" + strconv.Itoa(agentWebhookPort),
			"--webhook-cert-dir=" + filepath.Join(dir, "certs-"+m),
			"--webhook-cert-extra-dns-names=localhost",
			"--metrics-bind-address=0",
			"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probe),
		}, extra...))
		if err != nil {
			return err
		}
		probes[agent] = probe
	}
	for p, port := range probes {
		if err := waitReady(ctx, p, port); err != nil {
			return err
		}
	}
	return nil
}

// tokenOf reads the bearer token of a kubeconfig's current context.
func tokenOf(path string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.AuthInfos[ctx.AuthInfo] == nil || cfg.AuthInfos[ctx.AuthInfo].Token == "" {
		return "", fmt.Errorf("%s: no token in its current context", path)
	}
	return cfg.AuthInfos[ctx.AuthInfo].Token, nil
}

// waitReady polls a process's /readyz.
func waitReady(ctx context.Context, p *testenv.Process, port int) error {
	deadline := time.Now().Add(3 * time.Minute)
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	for {
		if err := p.Exited(); err != nil {
			return err
		}
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 3m; last lines of %s:\n%s", p.Name, p.LogPath, testenv.Tail(p.LogPath, 15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// warmUp waits until both members are healthy on the hub and one JobSet
// went through each path once (webhooks with their certificates,
// caches), so the first phase does not time start-up.
func (f *hubFleet) warmUp(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		list := &clusterinventory.ClusterProfileList{}
		if err := f.hub.Client.List(ctx, list, client.InNamespace(fleet.DefaultInventoryNamespace)); err != nil {
			return err
		}
		healthy := 0
		for _, cp := range list.Items {
			if meta.IsStatusConditionTrue(cp.Status.Conditions, clusterinventory.ClusterConditionControlPlaneHealthy) {
				healthy++
			}
		}
		if healthy == len(memberNames) {
			break
		}
		if err := f.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d members healthy on the hub after 3m", healthy, len(memberNames))
		}
		time.Sleep(500 * time.Millisecond)
	}
	const ns = "bench-warmup"
	if err := createNamespace(ctx, f.hub.Client, ns); err != nil {
		return err
	}
	names := []string{"warmup-0", "warmup-1"}
	// The hub's admission webhook answers once its certificate is made
	// and its CA injected: retry until then.
	for {
		err := createJobSets(ctx, f.hub.Client, ns, names, 1, f.onSubmit(ns))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("submitting warm-up JobSets: %w", err)
		}
		time.Sleep(time.Second)
	}
	for {
		f.mu.Lock()
		done := 0
		for _, name := range names {
			if _, ok := f.completed[ns+"/"+name]; ok {
				done++
			}
		}
		f.mu.Unlock()
		if done == len(names) {
			return nil
		}
		if err := f.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up JobSets not on members after 3m (%d of %d)", done, len(names))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *hubFleet) allProxies() []*countingProxy {
	out := []*countingProxy{f.hubProxy}
	out = append(out, f.agentHubProxies...)
	return append(out, f.agentMemberProxes...)
}

// sum adds up one kind of count (snapshot or failures) over proxies.
func sum(ps []*countingProxy, of func(*countingProxy) counts) counts {
	c := counts{}
	for _, p := range ps {
		c = c.add(of(p))
	}
	return c
}

// runPhase submits one phase's JobSets in a namespace of its own and
// measures it.
func (f *hubFleet) runPhase(ctx context.Context, o options, ph *hubPhase) error {
	ph.load = loadAverage()
	ns := "bench-" + strings.NewReplacer("/", "-per-", ".", "-").Replace(ph.name)
	logf("hub %s: %d JobSets (load %s)", ph.name, ph.n, ph.load)
	if err := createNamespace(ctx, f.hub.Client, ns); err != nil {
		return err
	}
	if _, err := waitQuiet(ctx, f.allProxies(), time.Minute); err != nil {
		return err
	}
	names := make([]string, ph.n)
	for i := range names {
		names[i] = jobSetName(i)
	}
	profs := map[string]*profiler{}
	if o.profile {
		for _, p := range f.procs {
			prof, err := startProfile(p.Pid(), filepath.Join(filepath.Dir(p.LogPath), p.Name+"-"+ns+".perf.data"))
			if err != nil {
				return err
			}
			profs[p.Name] = prof
		}
		// The control planes too: where an apiserver's CPU goes says
		// whether fewer or cheaper requests would help.
		for name, c := range f.controlPlanes() {
			if c.apiserverPID == 0 {
				continue
			}
			prof, err := startProfile(c.apiserverPID, filepath.Join(o.workDir, name+"-apiserver-"+ns+".perf.data"))
			if err != nil {
				return err
			}
			profs[name+" kube-apiserver"] = prof
		}
	}
	baseHub, baseAgentsHub, baseAgentsMember := f.hubProxy.snapshot(), sum(f.agentHubProxies, (*countingProxy).snapshot), sum(f.agentMemberProxes, (*countingProxy).snapshot)
	baseFHub, baseFAgentsHub, baseFMember := f.hubProxy.failures(), sum(f.agentHubProxies, (*countingProxy).failures), sum(f.agentMemberProxes, (*countingProxy).failures)
	apiA0, _ := f.hub.cpu()

	submitErr := make(chan error, 1)
	go func() {
		if ph.rate == 0 {
			submitErr <- createJobSets(ctx, f.hub.Client, ns, names, 50, f.onSubmit(ns))
			return
		}
		submitErr <- submitAtRate(ctx, f.hub.Client, ns, names, ph.rate, f.onSubmit(ns))
	}()
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = ns + "/" + n
	}
	deadline := time.Now().Add(o.runTimeout)
	var submitted bool
	lastLog := time.Now()
	for {
		select {
		case err := <-submitErr:
			if err != nil {
				return err
			}
			submitted = true
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		f.mu.Lock()
		done, dups := 0, len(f.duplicates)
		for _, k := range keys {
			if _, ok := f.completed[k]; ok {
				done++
			}
		}
		f.mu.Unlock()
		if dups > 0 {
			return fmt.Errorf("JobSets on two members: %v", f.duplicates)
		}
		if submitted && done == len(keys) {
			break
		}
		if err := f.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %d of %d JobSets have all their Jobs on a member", o.runTimeout, done, len(keys))
		}
		if time.Since(lastLog) > 30*time.Second {
			logf("  %d/%d JobSets have their Jobs on a member", done, len(keys))
			lastLog = time.Now()
		}
	}
	if _, err := waitQuiet(ctx, f.allProxies(), 2*time.Minute); err != nil {
		return err
	}
	apiA1, _ := f.hub.cpu()
	ph.hubAPIServerCPU = apiA1 - apiA0
	ph.profiles = map[string]string{}
	for name, prof := range profs {
		top, err := prof.stop()
		if err != nil {
			return err
		}
		ph.profiles[name] = top
	}
	ph.hubByHub = f.hubProxy.snapshot().minus(baseHub)
	ph.hubByAgents = sum(f.agentHubProxies, (*countingProxy).snapshot).minus(baseAgentsHub)
	ph.memberByAgents = sum(f.agentMemberProxes, (*countingProxy).snapshot).minus(baseAgentsMember)
	ph.failedHub = f.hubProxy.failures().minus(baseFHub)
	ph.failedAgentsHub = sum(f.agentHubProxies, (*countingProxy).failures).minus(baseFAgentsHub)
	ph.failedMember = sum(f.agentMemberProxes, (*countingProxy).failures).minus(baseFMember)

	f.mu.Lock()
	var firstSubmit, lastSubmit, lastDone time.Time
	ph.perMember = map[string]int{}
	for _, k := range keys {
		s, c := f.submitted[k], f.completed[k]
		if firstSubmit.IsZero() || s.Before(firstSubmit) {
			firstSubmit = s
		}
		if s.After(lastSubmit) {
			lastSubmit = s
		}
		if c.After(lastDone) {
			lastDone = c
		}
		ph.latencies = append(ph.latencies, c.Sub(s))
		ph.perMember[f.placedOn[k]]++
	}
	f.mu.Unlock()
	ph.completed = len(ph.latencies)
	slices.Sort(ph.latencies)
	ph.p50, ph.p99, ph.max = percentile(ph.latencies, 50), percentile(ph.latencies, 99), ph.latencies[len(ph.latencies)-1]
	if d := lastSubmit.Sub(firstSubmit).Seconds(); d > 0 {
		ph.submitRate = float64(ph.n-1) / d
	}
	if d := lastDone.Sub(firstSubmit).Seconds(); d > 0 {
		ph.throughput = float64(ph.completed) / d
	}
	// The benchmark's own correctness: each JobSet's Jobs and Service
	// exist, on the member the watch saw, and nowhere else.
	if err := f.verifyPlacement(ctx, ns, names); err != nil {
		return err
	}
	logf("  %s: %.1f JobSets/s, p50 %s, p99 %s, spread %s", ph.name, ph.throughput, secs(ph.p50), secs(ph.p99), ph.spreadString())
	return nil
}

// submitAtRate creates JobSets on a fixed schedule, open loop: a slow
// create does not delay the next one (each runs in its own goroutine), as
// users submitting independently would not wait for each other.
func submitAtRate(ctx context.Context, c client.Client, ns string, names []string, rate float64, submitted func(string, time.Time)) error {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i, name := range names {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			}
		}
		wg.Go(func() {
			if err := createJobSets(ctx, c, ns, []string{name}, 1, submitted); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// verifyPlacement lists the Jobs and Services of ns on every member and
// checks each JobSet's children are all on the member it was seen on and
// none on another.
func (f *hubFleet) verifyPlacement(ctx context.Context, ns string, names []string) error {
	byMember := map[string][]string{}
	f.mu.Lock()
	for _, n := range names {
		m := f.placedOn[ns+"/"+n]
		byMember[m] = append(byMember[m], n)
	}
	f.mu.Unlock()
	for _, m := range memberNames {
		cfg := f.members[m].Config
		if _, _, err := verifyChildren(ctx, cfg, ns, byMember[m]); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		mc, err := metadata.NewForConfig(cfg)
		if err != nil {
			return err
		}
		jobs, err := mc.Resource(jobsGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if want := len(byMember[m]) * jobsPerJobSet; len(jobs.Items) != want {
			return fmt.Errorf("%s has %d Jobs in %s, want %d (a JobSet on two members?)", m, len(jobs.Items), ns, want)
		}
	}
	return nil
}
