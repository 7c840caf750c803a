// Package integration tests the whole fleet in one process on real
// apiservers: a hub (with the hub's admission webhooks, inventory and
// dispatcher) and two members (with kube-controller-manager, the spoke
// JobSet reconciler and the agent), joined with membership.Join and
// reaching the hub through TCP proxies the tests can cut. The clusters are
// shared by every test (TestMain); each test works in its own namespace and
// leaves the members empty when it ends.
//
//	KUBEBUILDER_ASSETS=$PWD/bin go test ./e2e/integration/ -v -count=1
//
// Controller logs go to a temporary file named when the run fails
// (FLEET_TEST_VERBOSE=1 sends them to stderr).
package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// Timings. The agents renew every 500ms and fence after fenceTimeout; the
// hub calls a member stale after heartbeatTimeout and lost after
// memberLostTimeout (> fenceTimeout, as the design requires).
const (
	heartbeatInterval = 500 * time.Millisecond
	profileInterval   = time.Second
	fenceTimeout      = 3 * time.Second
	heartbeatTimeout  = 2500 * time.Millisecond
	memberLostTimeout = 8 * time.Second

	inventoryNS = fleet.DefaultInventoryNamespace
)

// The two members: names, ClusterProfile labels and node capacity.
const (
	alpha = "alpha"
	beta  = "beta"
)

var memberSpecs = []struct {
	name   string
	labels map[string]string
	cpu    string
	memory string
}{
	{alpha, map[string]string{"region": "eu", "tier": "gold"}, "8", "32Gi"},
	{beta, map[string]string{"region": "us"}, "4", "16Gi"},
}

// env is the fleet shared by every test of the package.
var env *fleetEnv

type fleetEnv struct {
	hub     *testenv.Cluster
	members map[string]*member
	names   []string // member names, sorted

	// hubProxy carries the hub controllers' own connection to the hub
	// apiserver: cutting it before stopping them makes the stop look like
	// a crash (in-flight writes fail) rather than a graceful shutdown.
	hubProxy *testenv.Proxy

	hubMu   sync.Mutex
	hubCtl  *runningManager
	hubRuns int
}

// member is one member cluster with its agent.
type member struct {
	name    string
	cluster *testenv.Cluster
	proxy   *testenv.Proxy
	// hubKubeconfig, hubConfig and hubClient are the agent's join
	// credentials.
	hubKubeconfig []byte
	hubConfig     *rest.Config
	hubClient     client.Client

	mu    sync.Mutex
	agent *runningAgent
	runs  int
}

type runningManager struct {
	cancel context.CancelFunc
	done   chan error
}

func (m *runningManager) stop() error {
	m.cancel()
	return <-m.done
}

type runningAgent struct {
	*agent.Agent
	runningManager
}

var logPath string

func TestMain(m *testing.M) {
	logger, closeLog := fileLogger()
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	code := func() int {
		defer closeLog()
		defer removeBinaries()
		e, stop, err := startFleet()
		defer stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting the fleet:", err)
			return 1
		}
		env = e
		return m.Run()
	}()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "controller logs:", logPath)
	}
	os.Exit(code)
}

// fileLogger writes the controllers' logs (V(1)) to a file, named on
// failure, so test output stays readable. FLEET_TEST_VERBOSE sends them to
// stderr instead.
func fileLogger() (logr.Logger, func()) {
	out := io.Writer(os.Stderr)
	closeFn := func() {}
	if os.Getenv("FLEET_TEST_VERBOSE") == "" {
		f, err := os.CreateTemp("", "fleet-integration-*.log")
		if err != nil {
			return logr.Discard(), closeFn
		}
		logPath = f.Name()
		out, closeFn = f, func() { f.Close() }
	}
	var mu sync.Mutex
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1}), closeFn
}

// startFleet starts the hub and the members, the hub's webhook server and
// controllers, joins each member and starts its agent.
func startFleet() (_ *fleetEnv, stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()

	e := &fleetEnv{members: map[string]*member{}}
	// Start the three control planes in parallel.
	var wg sync.WaitGroup
	clusters := make([]*testenv.Cluster, 1+len(memberSpecs))
	stopFns := make([]func(), len(clusters))
	errs := make([]error, len(clusters))
	for i := range clusters {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("%v", r)
				}
			}()
			if i == 0 {
				// kube-controller-manager: a deleted member namespace is
				// really emptied and removed, as on a real hub.
				clusters[i], stopFns[i] = testenv.StartMain("hub", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")), testenv.WithControllerManager())
				return
			}
			clusters[i], stopFns[i] = testenv.StartMain(memberSpecs[i-1].name, testenv.WithControllerManager())
		})
	}
	wg.Wait()
	for _, s := range stopFns {
		if s != nil {
			stops = append(stops, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, stop, err
	}
	e.hub = clusters[0]

	ctx, cancel := context.WithCancel(context.Background())
	stops = append(stops, cancel)
	if err := startHubWebhooks(ctx, e.hub); err != nil {
		return nil, stop, err
	}
	if err := testenv.InstallAccessPolicy(ctx, e.hub.Client, testenv.RepoRoot()); err != nil {
		return nil, stop, err
	}
	hubURL, err := url.Parse(e.hub.Config.Host)
	if err != nil {
		return nil, stop, err
	}
	if e.hubProxy, err = testenv.StartProxy(hubURL.Host); err != nil {
		return nil, stop, err
	}
	stops = append(stops, e.hubProxy.Cut)
	stops = append(stops, func() { _ = e.stopHub() })
	if err := e.startHub(); err != nil {
		return nil, stop, err
	}
	for i, spec := range memberSpecs {
		m := &member{name: spec.name, cluster: clusters[i+1]}
		m.proxy, err = testenv.StartProxy(hubURL.Host)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, m.proxy.Cut)
		kubeconfig, err := membership.Join(ctx, e.hub.Client, m.cluster.Client, membership.Options{
			ClusterName:  spec.name,
			Labels:       spec.labels,
			HubServerURL: "https://" + m.proxy.Addr,
			HubCAData:    e.hub.Config.CAData,
			SkipCRDs:     true, // testenv installed them
		})
		if err != nil {
			return nil, stop, fmt.Errorf("join %s: %w", spec.name, err)
		}
		m.hubKubeconfig = kubeconfig
		// Exactly what cmd/agent does with the Secret's kubeconfig.
		if m.hubConfig, err = clientcmd.RESTConfigFromKubeConfig(kubeconfig); err != nil {
			return nil, stop, err
		}
		if m.hubClient, err = client.New(m.hubConfig, client.Options{Scheme: testenv.Scheme()}); err != nil {
			return nil, stop, err
		}
		if err := addNode(ctx, m.cluster.Client, "node-1", spec.cpu, spec.memory); err != nil {
			return nil, stop, fmt.Errorf("node on %s: %w", spec.name, err)
		}
		if err := m.startAgent(); err != nil {
			return nil, stop, fmt.Errorf("agent of %s: %w", spec.name, err)
		}
		stops = append(stops, func() { _ = m.stopAgent() })
		e.members[spec.name] = m
		e.names = append(e.names, spec.name)
	}
	sort.Strings(e.names)

	// Wait until the hub sees every member healthy with its capacity.
	if err := testenv.Poll(2*time.Minute, func() error { return e.checkMembersReady(ctx) }, testenv.Every(200*time.Millisecond)); err != nil {
		return nil, stop, fmt.Errorf("members not ready: %w", err)
	}
	return e, stop, nil
}

func (e *fleetEnv) checkMembersReady(ctx context.Context) error {
	for _, spec := range memberSpecs {
		cp := &clusterinventory.ClusterProfile{}
		if err := e.hub.Client.Get(ctx, types.NamespacedName{Namespace: inventoryNS, Name: spec.name}, cp); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(cp.Status.Conditions, clusterinventory.ClusterConditionControlPlaneHealthy) {
			return fmt.Errorf("%s: not healthy: %+v", spec.name, cp.Status.Conditions)
		}
		alloc, _ := inventory.ParseProperties(cp.Status.Properties)
		if q := alloc[corev1.ResourceCPU]; q.Cmp(resource.MustParse(spec.cpu)) != 0 {
			return fmt.Errorf("%s: allocatable cpu %s", spec.name, q.String())
		}
		// A new node carries the not-ready taint until the node controller
		// sees it Ready; a summary published before that makes admission
		// reject every JobSet as runnable nowhere.
		nodes, err := inventory.ParseNodeSummary(cp.Status.Properties)
		if err != nil || nodes == nil {
			return fmt.Errorf("%s: no node summary (%v)", spec.name, err)
		}
		for _, g := range nodes.Groups {
			if len(g.Taints) > 0 {
				return fmt.Errorf("%s: nodes still tainted %v", spec.name, g.Taints)
			}
		}
	}
	return nil
}

// startHubWebhooks serves the hub's admission webhooks (hub/admission) for
// the whole run, outside the hub controllers' manager, so that restarting
// the controllers does not make JobSet creation fail.
func startHubWebhooks(ctx context.Context, hub *testenv.Cluster) error {
	return hub.ServeWebhooks(ctx, hubOptions().Admission())
}

// hubOptions are the hub's, with short timeouts.
func hubOptions() hubcomponent.Options {
	o := hubcomponent.DefaultOptions()
	o.InventoryNamespace, o.HeartbeatTimeout, o.MemberLostTimeout = inventoryNS, heartbeatTimeout, memberLostTimeout
	return o
}

// startHub runs the hub's controllers (inventory + dispatch) as cmd/hub
// wires them, with short timeouts.
func (e *fleetEnv) startHub() error {
	e.hubMu.Lock()
	defer e.hubMu.Unlock()
	if e.hubCtl != nil {
		return errors.New("hub already running")
	}
	e.hubRuns++
	cfg := rest.CopyConfig(e.hub.Config)
	cfg.Host = "https://" + e.hubProxy.Addr
	opts := hubOptions()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:                  opts.CacheOptions(),
	})
	if err != nil {
		return err
	}
	if err := hubcomponent.Setup(mgr, opts); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningManager{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- mgr.Start(ctx) }()
	e.hubCtl = r
	return nil
}

// crashHub cuts the hub controllers off the apiserver, so that whatever
// they were writing fails, then stops them and restores the link for the
// next run.
func (e *fleetEnv) crashHub() error {
	e.hubProxy.Cut()
	_ = e.stopHub() // a crashed manager's errors do not matter
	return e.hubProxy.Heal()
}

// stopHub stops the hub's controllers, as a rollout would.
func (e *fleetEnv) stopHub() error {
	e.hubMu.Lock()
	defer e.hubMu.Unlock()
	if e.hubCtl == nil {
		return nil
	}
	err := e.hubCtl.stop()
	e.hubCtl = nil
	return err
}

// startAgent runs the member's manager: the spoke JobSet reconciler and the
// agent with its join credentials, as cmd/agent wires them.
func (m *member) startAgent() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.agent != nil {
		return errors.New("agent already running")
	}
	m.runs++
	mgr, err := ctrl.NewManager(m.cluster.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	opts := spoke.DefaultOptions()
	ao := &opts.Agent
	ao.ClusterName, ao.HubConfig = m.name, rest.CopyConfig(m.hubConfig)
	ao.HeartbeatInterval, ao.ProfileInterval, ao.FenceTimeout = heartbeatInterval, profileInterval, fenceTimeout
	ao.Identity = fmt.Sprintf("%s/test-%d", m.name, m.runs)
	ao.ControllerName = "jobset-fleet-agent-" + m.name
	started, err := spoke.Setup(mgr, opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: started, runningManager: runningManager{cancel: cancel, done: make(chan error, 1)}}
	go func() { r.done <- mgr.Start(ctx) }()
	m.agent = r
	return nil
}

func (m *member) stopAgent() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.agent == nil {
		return nil
	}
	err := m.agent.stop()
	m.agent = nil
	return err
}

func (m *member) currentAgent() *runningAgent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.agent
}

func (e *fleetEnv) other(name string) string {
	for _, n := range e.names {
		if n != name {
			return n
		}
	}
	return ""
}

// --- objects -------------------------------------------------------------

func addNode(ctx context.Context, c client.Client, name, cpu, memory string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, node); err != nil {
		return err
	}
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory), corev1.ResourcePods: resource.MustParse("1000")}
	node.Status.Capacity = node.Status.Allocatable
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(ctx, node); err != nil {
		return err
	}
	// The apiserver taints a new node not-ready (TaintNodesByCondition);
	// with no node lifecycle controller here, lift it as that controller
	// does for a Ready node, or the node summary shows no usable node.
	node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady })
	return c.Update(ctx, node)
}

// newJobSet is a plain user JobSet, exactly as a user would apply it (no
// managedBy: the hub's admission claims it for the fleet): one
// ReplicatedJob "w" of replicas Jobs of one pod asking cpu.
func newJobSet(ns, name string, replicas int32, cpu string, annotations ...string) *jobset.JobSet {
	w := jstesting.MakeJobSet(ns, name).Label("app", name).ReplicatedJob(
		jstesting.MakeReplicatedJob("w").Replicas(replicas).Parallelism(1).Completions(1).BackoffLimit(0).
			RestartPolicy(corev1.RestartPolicyNever).Container("main", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}).Obj())
	for i := 0; i+1 < len(annotations); i += 2 {
		w.Annotation(annotations[i], annotations[i+1])
	}
	return w.Obj()
}

// --- test helpers --------------------------------------------------------

var nsCounter struct {
	sync.Mutex
	n int
}

// namespace creates a fresh namespace on the hub for one test, and deletes
// the test's JobSets (waiting until their member copies are gone) when the
// test ends.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	nsCounter.Lock()
	nsCounter.n++
	name := fmt.Sprintf("%s-%d", prefix, nsCounter.n)
	nsCounter.Unlock()
	must(t, env.hub.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	t.Cleanup(func() { cleanupNamespace(t, name) })
	return name
}

// cleanupNamespace deletes every hub JobSet of ns and waits until they and
// their member copies (JobSets and Pods) are gone, so the next test starts
// with the members' capacity free.
func cleanupNamespace(t *testing.T, ns string) {
	ctx := context.Background()
	start := time.Now()
	defer func() { t.Logf("cleanup of namespace %s took %s", ns, time.Since(start).Round(100*time.Millisecond)) }()
	if err := env.hub.Client.DeleteAllOf(ctx, &jobset.JobSet{}, client.InNamespace(ns)); err != nil {
		t.Errorf("cleanup: deleting JobSets of %s: %v", ns, err)
		return
	}
	err := testenv.Poll(3*time.Minute, func() error {
		var list jobset.JobSetList
		if err := env.hub.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d hub JobSets left in %s", len(list.Items), ns)
		}
		for _, name := range env.names {
			c := env.members[name].cluster.Client
			var jss jobset.JobSetList
			if err := c.List(ctx, &jss, client.InNamespace(ns)); err != nil {
				return err
			}
			var pods corev1.PodList
			if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
				return err
			}
			if len(jss.Items)+len(pods.Items) > 0 {
				return fmt.Errorf("member %s: %d JobSets, %d Pods left in %s", name, len(jss.Items), len(pods.Items), ns)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(t testing.TB, obj client.Object) {
	t.Helper()
	must(t, env.hub.Client.Create(context.Background(), obj))
}

func hubJobSet(t testing.TB, ns, name string) *jobset.JobSet {
	t.Helper()
	js := &jobset.JobSet{}
	must(t, env.hub.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, js))
	return js
}

// memberJobSet returns the member's copy, or nil.
func memberJobSet(t testing.TB, member, ns, name string) *jobset.JobSet {
	t.Helper()
	js := &jobset.JobSet{}
	err := env.members[member].cluster.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, js)
	if apierrors.IsNotFound(err) {
		return nil
	}
	must(t, err)
	return js
}

func memberJobs(t testing.TB, member, ns, name string) []batchv1.Job {
	t.Helper()
	var list batchv1.JobList
	must(t, env.members[member].cluster.Client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: name}))
	return list.Items
}

// dispatchesOf lists a hub JobSet's dispatches in every member namespace.
func dispatchesOf(t testing.TB, uid types.UID) []fleet.JobSetDispatch {
	t.Helper()
	var list fleet.JobSetDispatchList
	must(t, env.hub.Client.List(context.Background(), &list, client.MatchingLabels{fleet.OriginUIDLabel: string(uid)}))
	return list.Items
}

func condition(js *jobset.JobSet, typ string) *metav1.Condition {
	return meta.FindStatusCondition(js.Status.Conditions, typ)
}

// waitPlaced waits until the hub JobSet is Dispatched=True and returns it
// with the member it names.
func waitPlaced(t testing.TB, ns, name string) (*jobset.JobSet, string) {
	t.Helper()
	var js *jobset.JobSet
	testenv.Eventually(t, time.Minute, "dispatch of "+ns+"/"+name, func() error {
		js = hubJobSet(t, ns, name)
		c := condition(js, fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionTrue || placedOn(js) == "" {
			return fmt.Errorf("not dispatched: status.fleet %+v, conditions %+v", js.Status.Fleet, js.Status.Conditions)
		}
		return nil
	})
	return js, placedOn(js)
}

// placedOn is the member the hub placed a JobSet on ("" while pending).
func placedOn(js *jobset.JobSet) string {
	if js.Status.Fleet == nil {
		return ""
	}
	return js.Status.Fleet.Cluster
}

// epochOf is the hub's current epoch for a JobSet.
func epochOf(js *jobset.JobSet) int64 {
	if js.Status.Fleet == nil {
		return 0
	}
	return js.Status.Fleet.Epoch
}

// jobRunning reports whether a Job may run pods: not suspended, not finished.
func jobRunning(j *batchv1.Job) bool {
	if ptr.Deref(j.Spec.Suspend, false) {
		return false
	}
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	return true
}

// copyRunning reports whether the member runs a copy of ns/name: the member
// JobSet exists, is not suspended, and has a Job that is neither suspended
// nor finished.
func copyRunning(ctx context.Context, member, ns, name string) (bool, string, error) {
	c := env.members[member].cluster.Client
	js := &jobset.JobSet{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); err != nil {
		if apierrors.IsNotFound(err) {
			return false, "absent", nil
		}
		return false, "", err
	}
	if js.IsSuspended() {
		return false, "suspended (epoch " + js.Labels[fleet.EpochLabel] + ")", nil
	}
	var jobs batchv1.JobList
	if err := c.List(ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: name}); err != nil {
		return false, "", err
	}
	for i := range jobs.Items {
		if jobRunning(&jobs.Items[i]) {
			return true, fmt.Sprintf("running (epoch %s, Job %s)", js.Labels[fleet.EpochLabel], jobs.Items[i].Name), nil
		}
	}
	return false, fmt.Sprintf("not suspended, no running Job (epoch %s, %d Jobs)", js.Labels[fleet.EpochLabel], len(jobs.Items)), nil
}

// finishPods plays the kubelet: every pod of the member JobSet succeeds.
func finishPods(t testing.TB, member, ns, name string) int {
	t.Helper()
	c := env.members[member].cluster.Client
	var pods corev1.PodList
	must(t, c.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: name}))
	for i := range pods.Items {
		p := &pods.Items[i]
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			got := &corev1.Pod{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
				return err
			}
			now := metav1.Now()
			got.Status.Phase = corev1.PodSucceeded
			got.Status.StartTime = &now
			got.Status.ContainerStatuses = []corev1.ContainerStatus{{
				Name: "main", Image: "busybox",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}},
			}}
			return c.Status().Update(context.Background(), got)
		})
		must(t, err)
	}
	return len(pods.Items)
}
