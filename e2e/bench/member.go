package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

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
	usage procstat.Usage
	// requests the contender made (through its proxy), clock start to
	// quiet; catch-up includes its start-up (discovery, lists, watches).
	requests apicount.Counts
	failed   apicount.Counts // of requests, those answered with an error
	// control plane CPU and the whole machine's busy fraction over the run.
	apiserverCPU, etcdCPU time.Duration
	machineBusy           float64
	load                  string
	jobs, services        int    // verified to exist
	profile               string // top of its CPU profile (-profile)
}

// runMember runs one contender in one mode on a fresh cluster.
func runMember(ctx context.Context, o options, ct contender, mode memberMode, cert *apicount.ServingCert) (res memberResult, err error) {
	res = memberResult{contender: ct, mode: mode, n: o.n, load: procstat.LoadAverage()}
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
	proxy, err := apicount.Start(c.Config, cert)
	if err != nil {
		return res, err
	}
	defer proxy.Close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := proxy.WriteKubeconfig(kubeconfig, cert, ""); err != nil {
		return res, err
	}
	const ns = "bench"
	if err := createNamespace(ctx, c.Client, ns); err != nil {
		return res, err
	}
	names := make([]string, o.n)
	for i := range names {
		names[i] = workload.Name(i)
	}
	tracker, err := workload.StartTracker(ctx, "member", c.Config, ns, o.n, nil)
	if err != nil {
		return res, err
	}
	defer tracker.Stop()

	var (
		p             *testenv.Process
		t0            time.Time
		base, baseF   apicount.Counts
		apiA0, etcdA0 time.Duration
		busy0, total0 time.Duration
	)
	var prof *procstat.Profile
	startProf := func() error {
		if !o.profile || ct.key == "raw" {
			return nil
		}
		var err error
		prof, err = procstat.StartProfile(p.Pid(), filepath.Join(dir, ct.key+".perf.data"))
		return err
	}
	mark := func() {
		base, baseF = proxy.Snapshot(), proxy.Failures()
		apiA0, etcdA0 = c.cpu()
		busy0, total0, _ = procstat.MachineCPU()
		t0 = time.Now()
	}
	switch mode {
	case catchUp:
		if err := workload.Create(ctx, c.Client, ns, names, 50, nil); err != nil {
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
		warm, err := workload.StartTracker(ctx, "member", c.Config, warmNS, 1, nil)
		if err != nil {
			return res, err
		}
		defer warm.Stop()
		if p, err = ct.start(dir, kubeconfig); err != nil {
			return res, err
		}
		defer p.Stop()
		if err := workload.Create(ctx, c.Client, warmNS, []string{"warmup"}, 1, nil); err != nil {
			return res, err
		}
		if err := waitDone(ctx, warm.Done(), p, 3*time.Minute, func() string { return "the warm-up JobSet's Jobs and Service" }); err != nil {
			return res, err
		}
		if _, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{proxy}, time.Minute); err != nil {
			return res, err
		}
		mark()
		if err := startProf(); err != nil {
			return res, err
		}
		go func() {
			if err := workload.Create(ctx, c.Client, ns, names, 50, nil); err != nil {
				logf("submitting JobSets: %v", err)
			}
		}()
	}
	if err := waitDone(ctx, tracker.Done(), p, o.runTimeout, func() string {
		return fmt.Sprintf("the Jobs and Services of %d JobSets (%d complete)", o.n, tracker.Count())
	}); err != nil {
		return res, err
	}
	done := time.Time{}
	for _, at := range tracker.Completions() {
		if at.After(done) {
			done = at
		}
	}
	res.wall = done.Sub(t0)
	lastWrite, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{proxy}, 2*time.Minute)
	if err != nil {
		return res, err
	}
	res.quiet = lastWrite.Sub(t0)
	if res.profile, err = prof.Stop(); err != nil {
		return res, err
	}
	if res.usage, err = procstat.Read(p.Pid()); err != nil {
		return res, err
	}
	res.requests = proxy.Snapshot().Minus(base)
	res.failed = proxy.Failures().Minus(baseF)
	apiA1, etcdA1 := c.cpu()
	res.apiserverCPU, res.etcdCPU = apiA1-apiA0, etcdA1-etcdA0
	busy1, total1, _ := procstat.MachineCPU()
	if total1 > total0 {
		res.machineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	p.Stop()
	// The benchmark's own correctness: what it timed really exists.
	if res.jobs, res.services, err = workload.Verify(ctx, c.Config, ns, names); err != nil {
		return res, fmt.Errorf("%s, %s: %w", ct.name, mode, err)
	}
	if want := o.n * workload.JobsPerJobSet; res.jobs != want || res.services != o.n {
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
