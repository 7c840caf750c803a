package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// cluster is a fresh envtest control plane (kube-apiserver + etcd, no
// controller-manager, no scheduler) with the pids of its processes.
type cluster struct {
	*testenv.Cluster
	stop                  func()
	apiserverPID, etcdPID int
}

// startCluster starts a control plane through e2e/testenv, retrying: on a
// loaded machine envtest's wait for the CRDs to be served can time out.
// Clusters are started one at a time so the new children are this
// cluster's; a failed attempt's processes are killed before the next.
func startCluster(name string) (c *cluster, err error) {
	for attempt := 1; attempt <= 3; attempt++ {
		if c, err = startClusterOnce(name); err == nil {
			return c, nil
		}
		logf("  cluster %s, attempt %d: %v", name, attempt, err)
	}
	return nil, err
}

func startClusterOnce(name string) (_ *cluster, err error) {
	before, err := testenv.Children()
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("starting cluster %s: %v", name, r)
			// envtest leaves its processes running when it fails after
			// starting them (e.g. installing CRDs).
			after, _ := testenv.Children()
			for pid := range after {
				if _, old := before[pid]; !old {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}()
	tc, stop := testenv.StartMain(name)
	c := &cluster{Cluster: tc, stop: stop}
	after, _ := testenv.Children()
	for pid, comm := range after {
		if _, old := before[pid]; old {
			continue
		}
		switch comm {
		case "kube-apiserver":
			c.apiserverPID = pid
		case "etcd":
			c.etcdPID = pid
		}
	}
	return c, nil
}

// cpu is the control plane's CPU so far (0 for a process not found).
func (c *cluster) cpu() (apiserver, etcd time.Duration) {
	if c.apiserverPID != 0 {
		apiserver, _ = procCPU(c.apiserverPID)
	}
	if c.etcdPID != 0 {
		etcd, _ = procCPU(c.etcdPID)
	}
	return apiserver, etcd
}

func createNamespace(ctx context.Context, c client.Client, name string) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// memberMode is when the JobSets are submitted relative to the controller.
type memberMode string

const (
	// catchUp: all JobSets exist before the controller starts; the clock
	// starts when it is launched (its start-up is part of the time).
	catchUp memberMode = "catch-up"
	// steady: the controller runs (and has done one warm-up JobSet); the
	// clock starts with the first of N submissions made as fast as 50
	// concurrent creates go.
	steady memberMode = "steady"
)

// memberResult is one contender's run of the member scenario.
type memberResult struct {
	contender contender
	mode      memberMode
	n         int
	// wall: clock start to every Job and Service seen by a watch.
	wall time.Duration
	// quiet: clock start until the contender stopped writing (3 s
	// without a write): its status writes, events and such are done.
	quiet time.Duration
	// usage of the contender process at quiet: peak RSS, CPU.
	usage usage
	// requests the contender made (through its proxy), clock start to
	// quiet; catch-up includes its start-up (discovery, lists, watches).
	requests counts
	failed   counts // of requests, those answered with an error
	// control plane CPU and the whole machine's busy fraction over the run.
	apiserverCPU, etcdCPU time.Duration
	machineBusy           float64
	load                  string
	jobs, services        int    // verified to exist
	profile               string // top of its CPU profile (-profile)
}

// quietFor is how long a contender must make no write for its work on the
// workload to count as done.
const quietFor = 3 * time.Second

// waitQuiet waits until the proxy has seen no write for quietFor (at most
// limit) and returns when the last write was seen.
func waitQuiet(ctx context.Context, proxies []*countingProxy, limit time.Duration) (time.Time, error) {
	writes := func() int64 {
		var n int64
		for _, p := range proxies {
			_, w := p.snapshot().total()
			n += w
		}
		return n
	}
	last, lastAt := writes(), time.Now()
	deadline := time.Now().Add(limit)
	for time.Since(lastAt) < quietFor && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return lastAt, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if w := writes(); w != last {
			last, lastAt = w, time.Now()
		}
	}
	return lastAt, nil
}

// runMember runs one contender in one mode on a fresh cluster.
func runMember(ctx context.Context, o options, ct contender, mode memberMode, cert *servingCert) (res memberResult, err error) {
	res = memberResult{contender: ct, mode: mode, n: o.n, load: loadAverage()}
	dir, err := os.MkdirTemp(o.workDir, fmt.Sprintf("member-%s-%s-", ct.key, mode))
	if err != nil {
		return res, err
	}
	logf("member %s, %s, N=%d: starting a fresh cluster (load %s)", ct.name, mode, o.n, res.load)
	c, err := startCluster("member")
	if err != nil {
		return res, err
	}
	defer c.stop()
	proxy, err := startCountingProxy(c.Config, cert)
	if err != nil {
		return res, err
	}
	defer proxy.close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := proxy.writeKubeconfig(kubeconfig, cert, ""); err != nil {
		return res, err
	}
	const ns = "bench"
	if err := createNamespace(ctx, c.Client, ns); err != nil {
		return res, err
	}
	names := make([]string, o.n)
	for i := range names {
		names[i] = jobSetName(i)
	}
	tracker, err := startChildTracker(ctx, "member", c.Config, ns, o.n, nil)
	if err != nil {
		return res, err
	}
	defer tracker.stop()

	var (
		p             *testenv.Process
		t0            time.Time
		base, baseF   counts
		apiA0, etcdA0 time.Duration
		busy0, total0 time.Duration
	)
	var prof *profiler
	startProf := func() error {
		if !o.profile || ct.key == "raw" {
			return nil
		}
		var err error
		prof, err = startProfile(p.Pid(), filepath.Join(dir, ct.key+".perf.data"))
		return err
	}
	mark := func() {
		base, baseF = proxy.snapshot(), proxy.failures()
		apiA0, etcdA0 = c.cpu()
		busy0, total0, _ = machineCPU()
		t0 = time.Now()
	}
	switch mode {
	case catchUp:
		if err := createJobSets(ctx, c.Client, ns, names, 50, nil); err != nil {
			return res, err
		}
		mark()
		if p, err = ct.start(dir, kubeconfig); err != nil {
			return res, err
		}
		defer p.Stop()
		if err := startProf(); err != nil {
			return res, err
		}
	case steady:
		// A warm-up JobSet in its own namespace proves the contender is
		// up, its caches synced, before the clock starts.
		const warmNS = "bench-warmup"
		if err := createNamespace(ctx, c.Client, warmNS); err != nil {
			return res, err
		}
		warm, err := startChildTracker(ctx, "member", c.Config, warmNS, 1, nil)
		if err != nil {
			return res, err
		}
		defer warm.stop()
		if p, err = ct.start(dir, kubeconfig); err != nil {
			return res, err
		}
		defer p.Stop()
		if err := createJobSets(ctx, c.Client, warmNS, []string{"warmup"}, 1, nil); err != nil {
			return res, err
		}
		if err := waitDone(ctx, warm.done, p, 3*time.Minute, func() string { return "the warm-up JobSet's Jobs and Service" }); err != nil {
			return res, err
		}
		if _, err := waitQuiet(ctx, []*countingProxy{proxy}, time.Minute); err != nil {
			return res, err
		}
		mark()
		if err := startProf(); err != nil {
			return res, err
		}
		go func() {
			if err := createJobSets(ctx, c.Client, ns, names, 50, nil); err != nil {
				logf("submitting JobSets: %v", err)
			}
		}()
	}
	if err := waitDone(ctx, tracker.done, p, o.runTimeout, func() string {
		return fmt.Sprintf("the Jobs and Services of %d JobSets (%d complete)", o.n, tracker.count())
	}); err != nil {
		return res, err
	}
	done := time.Time{}
	for _, at := range tracker.completions() {
		if at.After(done) {
			done = at
		}
	}
	res.wall = done.Sub(t0)
	lastWrite, err := waitQuiet(ctx, []*countingProxy{proxy}, 2*time.Minute)
	if err != nil {
		return res, err
	}
	res.quiet = lastWrite.Sub(t0)
	if res.profile, err = prof.stop(); err != nil {
		return res, err
	}
	if res.usage, err = procUsage(p.Pid()); err != nil {
		return res, err
	}
	res.requests = proxy.snapshot().minus(base)
	res.failed = proxy.failures().minus(baseF)
	apiA1, etcdA1 := c.cpu()
	res.apiserverCPU, res.etcdCPU = apiA1-apiA0, etcdA1-etcdA0
	busy1, total1, _ := machineCPU()
	if total1 > total0 {
		res.machineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	p.Stop()
	// The benchmark's own correctness: what it timed really exists.
	if res.jobs, res.services, err = verifyChildren(ctx, c.Config, ns, names); err != nil {
		return res, fmt.Errorf("%s, %s: %w", ct.name, mode, err)
	}
	if want := o.n * jobsPerJobSet; res.jobs != want || res.services != o.n {
		return res, fmt.Errorf("%s, %s: verified %d Jobs and %d Services, want %d and %d", ct.name, mode, res.jobs, res.services, want, o.n)
	}
	logf("  %s, %s: all %d Jobs and %d Services in %s (quiet at %s), peak RSS %s, CPU %s",
		ct.name, mode, res.jobs, res.services, res.wall.Round(10*time.Millisecond), res.quiet.Round(10*time.Millisecond),
		mib(res.usage.PeakRSS), res.usage.CPU)
	return res, nil
}

// waitDone waits for done, failing early if the process under test exits.
func waitDone(ctx context.Context, done <-chan struct{}, p *testenv.Process, timeout time.Duration, what func() string) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what())
		case <-tick.C:
			if p != nil {
				if err := p.Exited(); err != nil {
					return err
				}
			}
		}
	}
}
