package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
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
	hubByHub, hubByAgents, memberByAgents apicount.Counts
	// Of those, the requests answered with an error.
	failedHub, failedAgentsHub, failedMember apicount.Counts
	// Response bytes on the hub apiserver (the hub's and the agents').
	hubBytes        apicount.Counts
	hubAPIServerCPU time.Duration
	usage           phaseUsage        // every control plane and controller, first submit → quiet
	release         releaseStats      // submit → every Job unsuspended
	profiles        map[string]string // process → top of its CPU profile
	load            string
}

func (p *hubPhase) hubWrites() int64 {
	_, a := p.hubByHub.Total()
	_, b := p.hubByAgents.Total()
	return a + b
}

func (p *hubPhase) memberWrites() int64 {
	_, w := p.memberByAgents.Total()
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
	idle   phaseUsage // the contender doing nothing, before the first phase
}

// hubProcesses are a contender's controllers (ours: the hub and the
// agents; multikueue: the Kueue managers and the JobSet controllers).
type hubProcesses interface {
	Processes() []*testenv.Process
	Exited() error // the first controller's exit, nil while all run
}

// hubFleet is the running fleet of the hub scenario, for either contender.
type hubFleet struct {
	hubProcesses
	contender string              // as the progress lines name it
	clusters  map[string]*cluster // hub (or manager) and members, by name
	hub       *cluster
	members   map[string]*cluster
	// setupNamespace makes a phase's namespace where the contender needs it.
	setupNamespace func(ctx context.Context, ns string) error
	// proxies: the hub process → hub; each agent → hub; each agent → its
	// member.
	hubProxy           *apicount.Proxy
	agentHubProxies    []*apicount.Proxy
	agentMemberProxies []*apicount.Proxy

	mu         sync.Mutex
	submitted  map[string]time.Time // "<ns>/<name>" → create call started
	completed  map[string]time.Time // → 4 Jobs and the Service seen
	released   map[string]time.Time // → its 4 Jobs seen unsuspended
	placedOn   map[string]string    // → member
	duplicates []string             // JobSets seen complete on two members
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

// hubLayout is the hub scenario's fleet: each member has one rack of fake
// nodes (no kubelet runs: nothing of the workload starts), so placement
// has nodes to judge.
func hubLayout() devfleet.Layout {
	l := devfleet.Layout{Hub: "hub"}
	for _, m := range memberNames {
		l.Members = append(l.Members, devfleet.Member{Name: m, Racks: 1})
	}
	return l
}

// runHub brings up the fleet and runs the burst, then each offered rate.
func runHub(ctx context.Context, o options, cert *apicount.ServingCert) (*hubResult, error) {
	res := &hubResult{}
	dir, err := os.MkdirTemp(o.workDir, "hub-")
	if err != nil {
		return res, err
	}
	logf("hub: starting the hub and %d member clusters (load %s)", len(memberNames), procstat.LoadAverage())
	pf, err := upFleet(ctx, dir, hubLayout(), cert, o.oursArgs)
	if err != nil {
		return res, err
	}
	defer pf.Stop()
	f := newHubFleet(pf, pf.clusters, "hub")
	f.hubProxy = pf.proxies["hub"]["hub"]
	for _, m := range memberNames {
		if err := readyNodes(ctx, f.members[m].Client); err != nil {
			return res, fmt.Errorf("%s: %w", m, err)
		}
	}
	for _, m := range memberNames {
		f.agentHubProxies = append(f.agentHubProxies, pf.proxies["agent-"+m]["hub"])
		f.agentMemberProxies = append(f.agentMemberProxies, pf.proxies["agent-"+m][m])
	}
	stopTrackers, err := f.track(ctx)
	if err != nil {
		return res, err
	}
	defer stopTrackers() // before the fleet stops
	if err := f.warmUp(ctx); err != nil {
		return res, err
	}
	return res, f.runPhases(ctx, o, res, 0)
}

// track watches every member for the JobSets whose Jobs all appear
// there, and for when they are all unsuspended.
func (f *hubFleet) track(ctx context.Context) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	var trackers []*workload.Tracker
	stop = func() {
		for _, tr := range trackers {
			tr.Stop()
		}
		cancel()
	}
	for _, m := range memberNames {
		tr, err := workload.StartTracker(ctx, m, f.members[m].Config, "", 0, f.onComplete(m))
		if err != nil {
			stop()
			return nil, err
		}
		trackers = append(trackers, tr)
		if err := watchReleases(ctx, f.members[m].Config, f.onRelease); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

func newHubFleet(procs hubProcesses, clusters map[string]*cluster, hub string) *hubFleet {
	f := &hubFleet{hubProcesses: procs, contender: hub, clusters: clusters, hub: clusters[hub], members: map[string]*cluster{},
		submitted: map[string]time.Time{}, completed: map[string]time.Time{}, released: map[string]time.Time{}, placedOn: map[string]string{}}
	for _, m := range memberNames {
		f.members[m] = clusters[m]
	}
	f.setupNamespace = func(ctx context.Context, ns string) error { return createNamespace(ctx, f.hub.Client, ns) }
	return f
}

// runPhases runs the burst, then each offered rate; the rate "half" is
// half of capacity (0: of this run's own burst throughput).
func (f *hubFleet) runPhases(ctx context.Context, o options, res *hubResult, capacity float64) error {
	run := func(ph hubPhase) error {
		if err := f.runPhase(ctx, o, &ph); err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		res.phases = append(res.phases, ph)
		return nil
	}
	var err error
	if res.idle, err = f.idleUsage(ctx); err != nil {
		return err
	}
	if err := run(hubPhase{name: "burst", n: o.hubN}); err != nil {
		return err
	}
	if capacity == 0 {
		capacity = res.phases[0].throughput
	}
	for _, r := range o.rates {
		name := fmt.Sprintf("%.0f/s", r)
		if r == halfCapacity {
			r, name = max(0.5, capacity/2), "half-capacity"
		}
		if err := run(hubPhase{name: name, n: max(1, int(r*o.rateFor.Seconds())), rate: r}); err != nil {
			return err
		}
	}
	return nil
}

// readyNodes does for the members' fake nodes what a kubelet and the node
// lifecycle controller would, which an envtest control plane lacks: Ready,
// and without the not-ready taint the apiserver put on them at creation
// (placement does not send Pods to nodes that take none now).
func readyNodes(ctx context.Context, c client.Client) error {
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes); err != nil {
		return err
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady })
		if err := c.Update(ctx, n); err != nil {
			return fmt.Errorf("untainting node %s: %w", n.Name, err)
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		if err := c.Status().Update(ctx, n); err != nil {
			return fmt.Errorf("marking node %s ready: %w", n.Name, err)
		}
	}
	return nil
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
		if err := f.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d members healthy on the hub after 3m", healthy, len(memberNames))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return f.warmUpJobSets(ctx, deadline)
}

// warmUpJobSets sends one JobSet to each member and waits for its Jobs.
func (f *hubFleet) warmUpJobSets(ctx context.Context, deadline time.Time) error {
	const ns = "bench-warmup"
	if err := f.setupNamespace(ctx, ns); err != nil {
		return err
	}
	names := []string{"warmup-0", "warmup-1"}
	// The hub's admission webhook answers once its certificate is made
	// and its CA injected: retry until then.
	for {
		err := workload.Create(ctx, f.hub.Client, ns, names, 1, f.onSubmit(ns))
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
		if err := f.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up JobSets not on members after 3m (%d of %d)", done, len(names))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// allHubProxies are the proxies in front of the hub apiserver.
func (f *hubFleet) allHubProxies() []*apicount.Proxy {
	return append([]*apicount.Proxy{f.hubProxy}, f.agentHubProxies...)
}

func (f *hubFleet) allProxies() []*apicount.Proxy {
	return append(f.allHubProxies(), f.agentMemberProxies...)
}

// runPhase submits one phase's JobSets in a namespace of its own and
// measures it.
func (f *hubFleet) runPhase(ctx context.Context, o options, ph *hubPhase) error {
	ph.load = procstat.LoadAverage()
	ns := "bench-" + strings.NewReplacer("/", "-per-", ".", "-").Replace(ph.name)
	logf("%s %s: %d JobSets (load %s)", f.contender, ph.name, ph.n, ph.load)
	if err := f.setupNamespace(ctx, ns); err != nil {
		return err
	}
	if _, err := apicount.WaitQuiet(ctx, f.allProxies(), time.Minute); err != nil {
		return err
	}
	names := make([]string, ph.n)
	for i := range names {
		names[i] = workload.Name(i)
	}
	profs := map[string]*procstat.Profile{}
	if o.profile {
		for _, p := range f.Processes() {
			prof, err := procstat.StartProfile(p.Pid(), filepath.Join(filepath.Dir(p.LogPath), strings.ReplaceAll(p.Name, "/", "-")+"-"+ns+".perf.data"))
			if err != nil {
				return err
			}
			profs[p.Name] = prof
		}
		// The control planes too: where an apiserver's CPU goes says
		// whether fewer or cheaper requests would help.
		for name, c := range f.clusters {
			if c.apiserverPID == 0 {
				continue
			}
			prof, err := procstat.StartProfile(c.apiserverPID, filepath.Join(o.workDir, name+"-apiserver-"+ns+".perf.data"))
			if err != nil {
				return err
			}
			profs[name+" kube-apiserver"] = prof
		}
	}
	baseHub, baseAgentsHub, baseAgentsMember := f.hubProxy.Snapshot(), apicount.Sum(f.agentHubProxies, (*apicount.Proxy).Snapshot), apicount.Sum(f.agentMemberProxies, (*apicount.Proxy).Snapshot)
	baseFHub, baseFAgentsHub, baseFMember := f.hubProxy.Failures(), apicount.Sum(f.agentHubProxies, (*apicount.Proxy).Failures), apicount.Sum(f.agentMemberProxies, (*apicount.Proxy).Failures)
	hubBytes0 := apicount.Sum(f.allHubProxies(), (*apicount.Proxy).Bytes)
	apiA0, _ := f.hub.cpu()
	usage0 := sampleUsage(f.clusters, f.Processes())

	submitErr := make(chan error, 1)
	go func() {
		if ph.rate == 0 {
			submitErr <- workload.Create(ctx, f.hub.Client, ns, names, 50, f.onSubmit(ns))
			return
		}
		submitErr <- workload.SubmitAtRate(ctx, f.hub.Client, ns, names, ph.rate, f.onSubmit(ns))
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
		if err := f.Exited(); err != nil {
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
	if _, err := apicount.WaitQuiet(ctx, f.allProxies(), 2*time.Minute); err != nil {
		return err
	}
	apiA1, _ := f.hub.cpu()
	ph.hubAPIServerCPU = apiA1 - apiA0
	ph.usage = usage0.until(sampleUsage(f.clusters, f.Processes()))
	ph.profiles = map[string]string{}
	for name, prof := range profs {
		top, err := prof.Stop()
		if err != nil {
			return err
		}
		ph.profiles[name] = top
	}
	ph.hubByHub = f.hubProxy.Snapshot().Minus(baseHub)
	ph.hubByAgents = apicount.Sum(f.agentHubProxies, (*apicount.Proxy).Snapshot).Minus(baseAgentsHub)
	ph.memberByAgents = apicount.Sum(f.agentMemberProxies, (*apicount.Proxy).Snapshot).Minus(baseAgentsMember)
	ph.failedHub = f.hubProxy.Failures().Minus(baseFHub)
	ph.failedAgentsHub = apicount.Sum(f.agentHubProxies, (*apicount.Proxy).Failures).Minus(baseFAgentsHub)
	ph.failedMember = apicount.Sum(f.agentMemberProxies, (*apicount.Proxy).Failures).Minus(baseFMember)
	ph.hubBytes = apicount.Sum(f.allHubProxies(), (*apicount.Proxy).Bytes).Minus(hubBytes0)

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
	ph.release = f.releaseStats(keys)
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
		if _, _, err := workload.Verify(ctx, cfg, ns, byMember[m]); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		mc, err := metadata.NewForConfig(cfg)
		if err != nil {
			return err
		}
		jobs, err := mc.Resource(workload.JobsGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if want := len(byMember[m]) * workload.JobsPerJobSet; len(jobs.Items) != want {
			return fmt.Errorf("%s has %d Jobs in %s, want %d (a JobSet on two members?)", m, len(jobs.Items), ns, want)
		}
	}
	return nil
}
