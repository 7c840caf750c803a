package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestMain lets the test binary play the raw-client contender, as the
// benchmark binary does, when the harness test starts it.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "raw" {
		os.Exit(rawMain(os.Args[1:]))
	}
	// As the benchmark does: envtest logs through controller-runtime.
	ctrl.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%.0f = %s, want %s", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %s", got)
	}
}

// TestHarness runs the harness's own pieces at tiny N on a real apiserver:
// the raw contender as a process behind a counting proxy, the watch that
// times completion, the request apicount.Counts, and the verification — including
// that it fails when a counted object is missing. It asserts no time.
func TestHarness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := startCluster("bench-harness")
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	cert, err := apicount.NewServingCert()
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := apicount.Start(c.Config, cert)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := proxy.WriteKubeconfig(kubeconfig, cert, ""); err != nil {
		t.Fatal(err)
	}
	const ns, n = "bench", 3
	if err := createNamespace(ctx, c.Client, ns); err != nil {
		t.Fatal(err)
	}
	tracker, err := workload.StartTracker(ctx, "member", c.Config, ns, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tracker.Stop()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := rawContender(benchBins{self: self}, 5, false).start(dir, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	names := []string{workload.Name(0), workload.Name(1), workload.Name(2)}
	if err := workload.Create(ctx, c.Client, ns, names, 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := waitDone(ctx, tracker.Done(), p, time.Minute, func() string { return "the children of 3 JobSets" }); err != nil {
		t.Fatal(err)
	}
	if _, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{proxy}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// A request the apiserver failed (client-go retries a GET that hit a
	// reset connection) is not one the contender chose to make.
	got := proxy.Snapshot().Minus(proxy.Failures())
	if got[apicount.ReqKey{Verb: "create", Resource: "jobs"}] != n*workload.JobsPerJobSet || got[apicount.ReqKey{Verb: "create", Resource: "services"}] != n {
		t.Errorf("proxy counted %v, want %d Job and %d Service creates", got, n*workload.JobsPerJobSet, n)
	}
	if got[apicount.ReqKey{Verb: "list", Resource: "jobsets"}] != 1 || got[apicount.ReqKey{Verb: "watch", Resource: "jobsets"}] != 1 {
		t.Errorf("proxy counted %v, want one list and one watch of JobSets", got)
	}
	if len(tracker.Completions()) != n {
		t.Errorf("tracker completed %d JobSets, want %d", len(tracker.Completions()), n)
	}
	jobs, services, err := workload.Verify(ctx, c.Config, ns, names)
	if err != nil || jobs != n*workload.JobsPerJobSet || services != n {
		t.Fatalf("verifyChildren = %d Jobs, %d Services, %v; want %d, %d, nil", jobs, services, err, n*workload.JobsPerJobSet, n)
	}
	p.Stop()
	// A missing Job must fail the verification. Background propagation:
	// batch/v1 defaults to orphaning, whose finalizer only a garbage
	// collector removes, and this apiserver has none.
	gone := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: workload.ChildJobNames(names[1])[2]}}
	if err := c.Client.Delete(ctx, gone, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := workload.Verify(ctx, c.Config, ns, names); err == nil {
		t.Errorf("verifyChildren passed with Job %s deleted", gone.Name)
	}
}

// TestFleetScale runs the fleet-scale scenario at tiny N (2 members of one
// slot, 2 queued JobSets, one release) against a hub built from this
// checkout: every slot is filled, the queued JobSets wait without a hub
// write, and the freed slot goes to a queued JobSet. It asserts no time.
// About 20 s.
func TestFleetScale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	withHubFromCheckout(t)
	cert, err := apicount.NewServingCert()
	if err != nil {
		t.Fatal(err)
	}
	o, code := parseOptions([]string{"-scenarios", "fleet-scale", "-fleet-members", "2", "-fleet-slots", "1", "-fleet-pending", "2",
		"-fleet-releases", "1", "-fleet-idle", "2s", "-work-dir", t.TempDir(), "-run-timeout", "2m"})
	if code >= 0 {
		t.Fatalf("parseOptions: exit %d", code)
	}
	res, err := runFleetScale(ctx, o, cert)
	if err != nil {
		t.Fatal(err)
	}
	f := res.fleets[0]
	if f.fillN != 1 || len(f.rows) != 1 {
		t.Fatalf("fill %d, rows %d; want 1 JobSet filled (the warm-up holds the other slot) and one pending level", f.fillN, len(f.rows))
	}
	row := f.rows[0]
	if _, w := row.idleWrites.Total(); w != 0 {
		t.Errorf("the hub wrote while nothing changed: %v", row.idleWrites)
	}
	if len(row.latencies) != 1 || row.unanswered != 0 {
		t.Errorf("freed → dispatched measured %d times, %d freed slots never taken; want one and none", len(row.latencies), row.unanswered)
	}
}

// withHubFromCheckout builds cmd/hub into a directory that otherwise links
// the control-plane binaries, and points the test's processes at it: the
// scenario needs this checkout's hub, not whatever bin/ holds.
func withHubFromCheckout(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(binDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(binDir(), e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	hub := filepath.Join(dir, "jobset-fleet-hub")
	_ = os.Remove(hub)
	cmd := exec.Command("go", "build", "-o", hub, "./cmd/hub")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/hub: %v\n%s", err, out)
	}
	t.Setenv("KUBEBUILDER_ASSETS", dir)
}

// TestSimProperties: the simulated members' report is one a ClusterProfile
// accepts (a property value holds at most 1024 bytes) and leaves the
// pending JobSets no GPU, by sums or by node.
func TestSimProperties(t *testing.T) {
	props, err := simProperties(simNodeGroups(), metav1.Now())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, p := range props {
		if len(p.Value) > maxPropertyValue {
			t.Errorf("property %s is %d bytes", p.Name, len(p.Value))
		}
		byName[p.Name] = p.Value
	}
	if got := byName[fleet.PropertyFreePrefix+string(simGPU)]; got != "0" {
		t.Errorf("free GPUs = %q, want 0", got)
	}
	if got := byName[fleet.PropertyAllocatablePrefix+string(simGPU)]; got != "96" {
		t.Errorf("allocatable GPUs = %q, want 96 (12 nodes of 8)", got)
	}
	if byName[fleet.PropertyNodeSummary] == "" {
		t.Error("no node summary")
	}
}

// TestHarnessMultiKueue runs the hub scenario's multikueue contender at
// N=3 with no offered rates: a manager and two workers (3 envtest control
// planes, 3 Kueue managers, 2 upstream JobSet controllers; about a minute
// on 2 cores, plus building upstream JobSet once if bin/ lacks it). The
// JobSets must reach a worker through MultiKueue (the phase verifies every
// Job and Service there and none twice), Kueue must have claimed them for
// MultiKueue, and the proxies must have counted the workers' Job creates.
// It asserts no time.
func TestHarnessMultiKueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cert, err := apicount.NewServingCert()
	if err != nil {
		t.Fatal(err)
	}
	bins := benchBins{upstream: filepath.Join(binDir(), "upstream-jobset")}
	if _, err := os.Stat(bins.upstream); err != nil {
		bins.upstream = filepath.Join(t.TempDir(), "upstream-jobset")
		build := exec.CommandContext(ctx, "go", "build", "-o", bins.upstream, "sigs.k8s.io/jobset")
		build.Dir = filepath.Join(testenv.RepoRoot(), "hack", "upstream")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building upstream JobSet: %v\n%s", err, out)
		}
	}
	const n = 3
	o := options{hubN: n, runTimeout: 2 * time.Minute, workDir: t.TempDir()}
	res, err := runMultiKueue(ctx, o, bins, cert, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.phases) != 1 {
		t.Fatalf("%d phases, want the burst only", len(res.phases))
	}
	p := res.phases[0]
	if p.completed != n || p.perMember[memberNames[0]]+p.perMember[memberNames[1]] != n {
		t.Errorf("completed %d, spread %v; want %d JobSets on the workers", p.completed, p.perMember, n)
	}
	got := p.memberByAgents.Minus(p.failedMember)
	if c := got[apicount.ReqKey{Verb: "create", Resource: "jobs"}]; c != n*workload.JobsPerJobSet {
		t.Errorf("worker proxies counted %d Job creates, want %d", c, n*workload.JobsPerJobSet)
	}
	if c := p.hubByHub.Minus(p.failedHub)[apicount.ReqKey{Verb: "create", Resource: "workloads"}]; c != n {
		t.Errorf("manager proxy counted %d Workload creates by Kueue, want %d", c, n)
	}
	if p.usage.controlPlaneCPU() <= 0 || len(p.usage.planes) != 3 || len(p.usage.peakRSS) != 5 {
		t.Errorf("usage %+v: want CPU of 3 control planes and RSS of 5 controllers", p.usage)
	}
}

// TestSummaryLine: the line scripts read has issue 21's exact form.
func TestSummaryLine(t *testing.T) {
	usage := func(apiserver time.Duration) phaseUsage {
		return phaseUsage{planes: map[string]planeCPU{"hub": {apiserver: apiserver, etcd: apiserver / 2}}}
	}
	ours := hubPhase{n: 100, throughput: 50, usage: usage(2 * time.Second)}
	mk := hubPhase{n: 100, throughput: 20, usage: usage(6 * time.Second)}
	want := "vs-multikueue burst: throughput ours 50.0/s multikueue 20.0/s ratio 2.50x; cpu-per-jobset ours 30.0ms multikueue 90.0ms ratio 0.33x"
	if got := summaryLine("burst", ours, mk); got != want {
		t.Errorf("summaryLine =\n%s\nwant\n%s", got, want)
	}
}
