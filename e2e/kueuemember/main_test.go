package kueuemember_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke"
)

const (
	inventoryNS = fleet.DefaultInventoryNamespace
	// timeout is how long a test waits for Kueue, the hub or an agent.
	timeout = 45 * time.Second
)

// member is one member cluster with its Kueue.
type member struct {
	name    string
	cluster *testenv.Cluster
	kueue   *testenv.Kueue
}

var (
	hub     *testenv.Cluster
	members []*member
)

// TestMain starts the hub (admission webhooks, controllers) and two
// members, each with a Kueue manager, a node of 8 cpu and its agent,
// joined as `jobset-fleet-agent join` does.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Controller logs go to a file, named when the run fails.
	logFile, err := os.CreateTemp("", "kueue-members-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logFile.Close()
	var logMu sync.Mutex
	ctrl.SetLogger(funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintln(logFile, time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1}))
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	names := []string{"member-1", "member-2"}
	clusters := make([]*testenv.Cluster, 1+len(names))
	stopFns := make([]func(), len(clusters))
	errs := make([]error, len(clusters))
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("%v", r)
				}
			}()
			if i == 0 {
				clusters[i], stopFns[i] = testenv.StartMain("kueue-members-hub", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
				return
			}
			// kube-controller-manager: the garbage collector removes a
			// withdrawn copy's Jobs, as on a real member.
			clusters[i], stopFns[i] = testenv.StartMain(names[i-1], testenv.WithControllerManager())
		})
	}
	wg.Wait()
	for _, s := range stopFns {
		if s != nil {
			stops = append(stops, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	hub = clusters[0]
	ctx, cancel := context.WithCancel(context.Background())
	stops = append(stops, cancel)

	if err := hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: inventoryNS}}); err != nil {
		return fail(err)
	}
	if err := hub.ServeWebhooks(ctx, hubOptions().Admission()); err != nil {
		return fail(err)
	}
	if err := testenv.InstallAccessPolicy(ctx, hub.Client, testenv.RepoRoot()); err != nil {
		return fail(err)
	}
	hubOpts := hubOptions()
	stopHub, err := startManager(ctx, hub, func(mgr ctrl.Manager) error { return hubcomponent.Setup(mgr, hubOpts) }, hubOpts.CacheOptions())
	if err != nil {
		return fail(err)
	}
	stops = append(stops, stopHub)

	for i, name := range names {
		mb := &member{name: name, cluster: clusters[i+1]}
		if mb.kueue, err = testenv.StartKueue(ctx, mb.cluster, testenv.KueueOptions{}); err != nil {
			return fail(err)
		}
		stops = append(stops, mb.kueue.Stop)
		if err := addNode(ctx, mb.cluster.Client, "node-1", "8"); err != nil {
			return fail(fmt.Errorf("node on %s: %w", name, err))
		}
		kubeconfig, err := membership.Join(ctx, hub.Client, mb.cluster.Client, membership.Options{
			ClusterName: name, HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true,
		})
		if err != nil {
			return fail(fmt.Errorf("join %s: %w", name, err))
		}
		hubConfig, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
		if err != nil {
			return fail(err)
		}
		opts := spoke.DefaultOptions()
		ao := &opts.Agent
		ao.ClusterName, ao.HubConfig = name, hubConfig
		ao.HeartbeatInterval, ao.ProfileInterval, ao.FenceTimeout = 500*time.Millisecond, time.Second, 3*time.Second
		ao.Identity, ao.ControllerName = name+"/test", "jobset-fleet-agent-"+name
		stopAgent, err := startManager(ctx, mb.cluster, func(mgr ctrl.Manager) error {
			_, err := spoke.Setup(mgr, opts)
			return err
		}, cache.Options{})
		if err != nil {
			return fail(fmt.Errorf("agent of %s: %w", name, err))
		}
		stops = append(stops, stopAgent)
		members = append(members, mb)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "controller logs:", logFile.Name())
		for _, mb := range members {
			fmt.Fprintf(os.Stderr, "last lines of %s's Kueue log (%s):\n%s\n", mb.name, mb.kueue.LogPath, mb.kueue.Log(30))
		}
	}
	return code
}

// hubOptions are the hub's, with short heartbeat timeouts.
func hubOptions() hubcomponent.Options {
	o := hubcomponent.DefaultOptions()
	o.InventoryNamespace, o.HeartbeatTimeout, o.MemberLostTimeout = inventoryNS, 2500*time.Millisecond, 8*time.Second
	return o
}

// startManager runs a manager on c with setup until stop is called.
func startManager(ctx context.Context, c *testenv.Cluster, setup func(ctrl.Manager) error, cacheOpts cache.Options) (stop func(), err error) {
	mgr, err := ctrl.NewManager(c.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:                  cacheOpts,
	})
	if err != nil {
		return nil, err
	}
	if err := setup(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}, nil
}

// addNode adds a Ready node of cpu to a member (no kubelet: the tests
// look at Kueue's admission and the Jobs, not at running Pods).
func addNode(ctx context.Context, c client.Client, name, cpu string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, node); err != nil {
		return err
	}
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("100")}
	node.Status.Capacity = node.Status.Allocatable
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(ctx, node); err != nil {
		return err
	}
	// The apiserver taints a new node not-ready; no node lifecycle
	// controller runs here to lift it.
	node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady })
	return c.Update(ctx, node)
}

// kueueObject is a Kueue object (Kueue's Go types stay out of this module).
func kueueObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("kueue.x-k8s.io/v1beta2")
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}
