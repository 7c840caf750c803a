package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
)

// The placement scenario: the hub process (jobset-fleet-hub, its
// admission webhook served) and one hub apiserver, with simulated members
// (simmember.go) and no agents. For each member count, a fresh hub; for
// each pending count, that many JobSets that fit nowhere wait, the hub's
// idle cost is measured, and then a burst of JobSets that fit is placed.
// A placement decision is a JobSetDispatch created.

// placementIdleFor is how long the hub's idle cost is measured, with the
// pending JobSets waiting and the members' heartbeats coming in.
const placementIdleFor = 15 * time.Second

// placementRow is one burst: members × pending.
type placementRow struct {
	members, pending, n int
	// wall: first submit → the last JobSetDispatch seen by a watch.
	wall time.Duration
	// hubCPU: the hub process's CPU, first submit → the hub quiet (no
	// write for 3 s): the decisions and what they write.
	hubCPU time.Duration
	// hubRequests: the hub's requests over the same window.
	hubRequests, hubFailed apicount.Counts
	// idleCPU, idleWrites: the hub's CPU and writes in placementIdleFor
	// before the burst, with the pending JobSets waiting.
	idleCPU    time.Duration
	idleWrites int64
	load       string
}

func (r placementRow) decisionsPerSecond() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.n) / r.wall.Seconds()
}

func (r placementRow) cpuPerDecision() time.Duration {
	return r.hubCPU / time.Duration(max(r.n, 1))
}

type placementResult struct {
	rows []placementRow
}

// runPlacement runs the scenario for each member count on a fresh hub.
func runPlacement(ctx context.Context, o options, cert *apicount.ServingCert) (*placementResult, error) {
	res := &placementResult{}
	pending := slices.Sorted(slices.Values(o.placementPending))
	for _, m := range o.placementMembers {
		rows, err := runPlacementFleet(ctx, o, cert, m, pending)
		res.rows = append(res.rows, rows...)
		if err != nil {
			return res, fmt.Errorf("%d members: %w", m, err)
		}
	}
	return res, nil
}

// placementFleet is the running hub of one member count.
type placementFleet struct {
	*proxiedFleet
	hub      *cluster
	hubProxy *apicount.Proxy
	hubPID   int
	members  *simMembers
	dispatch *dispatchWatch
}

func runPlacementFleet(ctx context.Context, o options, cert *apicount.ServingCert, members int, pending []int) ([]placementRow, error) {
	dir, err := os.MkdirTemp(o.workDir, fmt.Sprintf("placement-%d-", members))
	if err != nil {
		return nil, err
	}
	logf("placement, %d members: starting a hub (load %s)", members, procstat.LoadAverage())
	pf, err := upFleet(ctx, dir, devfleet.Layout{Hub: "hub"}, cert, o.oursArgs)
	if err != nil {
		return nil, err
	}
	defer pf.Stop()
	f := &placementFleet{proxiedFleet: pf, hub: pf.clusters["hub"], hubProxy: pf.proxies["hub"]["hub"], hubPID: pf.Processes()[0].Pid()}
	if f.dispatch, err = watchDispatches(ctx, f.hub.Config); err != nil {
		return nil, err
	}
	defer f.dispatch.stop()
	if f.members, err = startSimMembers(ctx, f.hub.Client, members); err != nil {
		return nil, err
	}
	defer f.members.Stop()
	if err := f.warmUp(ctx); err != nil {
		return nil, err
	}
	var rows []placementRow
	waiting := 0
	for _, p := range pending {
		row := placementRow{members: members, pending: p, n: o.placementN, load: procstat.LoadAverage()}
		if err := f.addPending(ctx, waiting, p); err != nil {
			return rows, err
		}
		waiting = p
		if err := f.measureIdle(ctx, &row); err != nil {
			return rows, err
		}
		if err := f.burst(ctx, o, &row); err != nil {
			return rows, err
		}
		rows = append(rows, row)
		logf("  %d members, %d pending: %.1f decisions/s, hub CPU %.1f ms/decision, idle hub CPU %.2f s in %s, %d idle writes",
			members, p, row.decisionsPerSecond(), ms(row.cpuPerDecision()), row.idleCPU.Seconds(), placementIdleFor, row.idleWrites)
	}
	// Nothing that fits nowhere was placed.
	if n := f.dispatch.countIn(pendingNamespace); n > 0 {
		return rows, fmt.Errorf("%d JobSets that fit no member were dispatched", n)
	}
	return rows, nil
}

// warmUp submits one JobSet pinned to the last simulated member and waits
// for its dispatch: the hub's webhook serves (its certificate made and
// its CA injected), and the hub has seen every member (they were created
// in order, the last one last).
func (f *placementFleet) warmUp(ctx context.Context) error {
	const ns = "bench-warmup"
	if err := createNamespace(ctx, f.hub.Client, ns); err != nil {
		return err
	}
	js := placementJobSet(ns, "warmup")
	js.Annotations = map[string]string{fleet.PinnedClusterAnnotation: f.members.names[len(f.members.names)-1]}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := f.hub.Client.Create(ctx, js.DeepCopy())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("submitting the warm-up JobSet: %w", err)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	return f.waitDispatched(ctx, ns, 1, 3*time.Minute)
}

// pendingNamespace holds the JobSets that fit nowhere.
const pendingNamespace = "bench-pending"

// addPending brings the JobSets that fit nowhere from have to want and
// waits until the hub stopped writing about them.
func (f *placementFleet) addPending(ctx context.Context, have, want int) error {
	if want <= have {
		return nil
	}
	if have == 0 {
		if err := createNamespace(ctx, f.hub.Client, pendingNamespace); err != nil {
			return err
		}
	}
	names := make([]string, 0, want-have)
	for i := have; i < want; i++ {
		names = append(names, workload.Name(i))
	}
	if err := createEach(ctx, f.hub.Client, names, 50, func(name string) client.Object { return pendingJobSet(pendingNamespace, name) }); err != nil {
		return err
	}
	_, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{f.hubProxy}, 2*time.Minute)
	return err
}

// measureIdle is the hub's CPU and writes while nothing is submitted.
func (f *placementFleet) measureIdle(ctx context.Context, row *placementRow) error {
	cpu0, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	_, w0 := f.hubProxy.Snapshot().Total()
	if err := sleep(ctx, placementIdleFor); err != nil {
		return err
	}
	cpu1, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	_, w1 := f.hubProxy.Snapshot().Total()
	row.idleCPU, row.idleWrites = cpu1-cpu0, w1-w0
	return nil
}

// burst submits row.n JobSets that fit (50 concurrent creates) and
// measures until each has its JobSetDispatch and the hub is quiet.
func (f *placementFleet) burst(ctx context.Context, o options, row *placementRow) error {
	ns := fmt.Sprintf("bench-burst-%d", row.pending)
	if err := createNamespace(ctx, f.hub.Client, ns); err != nil {
		return err
	}
	names := make([]string, row.n)
	for i := range names {
		names[i] = workload.Name(i)
	}
	base, baseF := f.hubProxy.Snapshot(), f.hubProxy.Failures()
	cpu0, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := createEach(ctx, f.hub.Client, names, 50, func(name string) client.Object { return placementJobSet(ns, name) }); err != nil {
		return err
	}
	if err := f.waitDispatched(ctx, ns, row.n, o.runTimeout); err != nil {
		return err
	}
	row.wall = f.dispatch.last(ns).Sub(t0)
	if _, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{f.hubProxy}, 2*time.Minute); err != nil {
		return err
	}
	cpu1, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	row.hubCPU = cpu1 - cpu0
	row.hubRequests, row.hubFailed = f.hubProxy.Snapshot().Minus(base), f.hubProxy.Failures().Minus(baseF)
	return nil
}

// waitDispatched waits until n JobSets of ns have a JobSetDispatch.
func (f *placementFleet) waitDispatched(ctx context.Context, ns string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for f.dispatch.countIn(ns) < n {
		if err := f.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %d of %d JobSets of %s dispatched", timeout, f.dispatch.countIn(ns), n, ns)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// placementJobSet is the workload JobSet with requests (0.5 CPU, 1 GiB per
// Pod: 4 CPUs a JobSet) that fit the simulated members' CPU nodes.
func placementJobSet(ns, name string) *jobset.JobSet {
	js := workload.New(ns, name)
	for i := range js.Spec.ReplicatedJobs {
		c := &js.Spec.ReplicatedJobs[i].Template.Spec.Template.Spec.Containers[0]
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	}
	return js
}

// pendingJobSet asks for a whole 8-GPU node, tolerating the GPU taint:
// every simulated member has such nodes, none with a GPU free.
func pendingJobSet(ns, name string) *jobset.JobSet {
	js := workload.New(ns, name)
	rj := &js.Spec.ReplicatedJobs[0]
	rj.Replicas = 1
	one := int32(1)
	rj.Template.Spec.Parallelism, rj.Template.Spec.Completions = &one, &one
	pod := &rj.Template.Spec.Template.Spec
	pod.Tolerations = []corev1.Toleration{{Key: simGPUTaint.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	pod.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), simGPU: resource.MustParse("8")}
	pod.Containers[0].Resources.Limits = corev1.ResourceList{simGPU: resource.MustParse("8")}
	return js
}

// createEach creates the objects newObj returns for names with `workers`
// concurrent creates.
func createEach(ctx context.Context, c client.Client, names []string, workers int, newObj func(string) client.Object) error {
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range work {
				if err := c.Create(ctx, newObj(name)); err != nil {
					errs <- fmt.Errorf("creating %s: %w", name, err)
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// dispatchWatch records, from a metadata-only watch of every
// JobSetDispatch on the hub, when the dispatch of each JobSet appeared,
// by the JobSet's namespace.
type dispatchWatch struct {
	mu    sync.Mutex
	times map[string]map[string]time.Time // JobSet namespace → name → first seen
	stop  context.CancelFunc
}

func watchDispatches(ctx context.Context, cfg *rest.Config) (*dispatchWatch, error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &dispatchWatch{times: map[string]map[string]time.Time{}, stop: cancel}
	factory := metadatainformer.NewSharedInformerFactory(mc, 0)
	inf := factory.ForResource(fleet.GroupVersion.WithResource("jobsetdispatches")).Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: w.observe}); err != nil {
		cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, fmt.Errorf("the JobSetDispatch informer never synced")
	}
	return w, nil
}

func (w *dispatchWatch) observe(obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	now := time.Now()
	// The dispatch is named <namespace>.<name> of its JobSet (fleet.DispatchName).
	ns, name, ok := strings.Cut(m.Name, ".")
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.times[ns] == nil {
		w.times[ns] = map[string]time.Time{}
	}
	if _, dup := w.times[ns][name]; !dup {
		w.times[ns][name] = now
	}
}

// countIn is how many JobSets of ns have a dispatch.
func (w *dispatchWatch) countIn(ns string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.times[ns])
}

// last is when the last dispatch of a JobSet of ns appeared.
func (w *dispatchWatch) last(ns string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Time
	for _, t := range w.times[ns] {
		if t.After(last) {
			last = t
		}
	}
	return last
}
