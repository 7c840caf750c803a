package jobset_test

// Integration tests: the Reconciler runs in a controller-runtime manager
// against real kube-apiservers started by e2e/testenv.
//
//   - the "plain" cluster has no kube-controller-manager: tests drive Job
//     status themselves, as the Job controller would, and a small stand-in
//     for the garbage collector finishes foreground deletions of Jobs (which
//     have no pods there);
//   - the "gc" cluster (started on first use) runs a real
//     kube-controller-manager, for tests where real Pods, the Job controller
//     and cascading deletion matter.

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	jobsetcontroller "github.com/jobset-fleet/jobset-fleet/spoke/jobset"
)

// env is one cluster with the reconciler running against it.
type env struct {
	cluster *testenv.Cluster
	// c is an uncached admin client: what a user (or kubectl) sees.
	c      client.Client
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	plain *env

	gcOnce sync.Once
	gc     *env
	gcErr  error
	gcStop func()
)

func TestMain(m *testing.M) {
	// JOBSET_TEST_LOGS=1 shows the controllers' logs (verbosity 2).
	out := io.Discard
	if os.Getenv("JOBSET_TEST_LOGS") != "" {
		out = os.Stderr
	}
	ctrl.SetLogger(funcr.New(func(prefix, args string) { fmt.Fprintln(out, prefix, args) }, funcr.Options{Verbosity: 2}))

	os.Exit(func() int {
		cluster, stop := testenv.StartMain("jobset-plain")
		defer stop()
		plain = startEnv(cluster, true)
		defer plain.stop()
		defer func() {
			if gc != nil {
				gc.stop()
			}
			if gcStop != nil {
				gcStop()
			}
		}()
		return m.Run()
	}())
}

// gcEnv returns the cluster with a real kube-controller-manager, starting it
// on first use.
func gcEnv(t *testing.T) *env {
	t.Helper()
	gcOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				gcErr = fmt.Errorf("%v", r)
			}
		}()
		cluster, stop := testenv.StartMain("jobset-gc", testenv.WithControllerManager())
		gcStop = stop
		gc = startEnv(cluster, false)
	})
	if gcErr != nil {
		t.Fatalf("starting the cluster with kube-controller-manager: %v", gcErr)
	}
	return gc
}

func startEnv(cluster *testenv.Cluster, fakeGC bool) *env {
	mgr, err := ctrl.NewManager(cluster.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller: config.Controller{
			// Two managers in one process register the same controller.
			SkipNameValidation:      ptr.To(true),
			MaxConcurrentReconciles: 4,
		},
	})
	if err != nil {
		panic(err)
	}
	r := jobsetcontroller.NewReconciler(mgr.GetClient(), mgr.GetEventRecorder(jobsetcontroller.ReportingController))
	if err := r.SetupWithManager(mgr); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{cluster: cluster, c: cluster.Client, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "manager for %s stopped: %v\n", cluster.Name, err)
		}
	}()
	if fakeGC {
		go finishForegroundDeletions(ctx, cluster.Client, logr.Discard())
	}
	return e
}

func (e *env) stop() {
	e.cancel()
	<-e.done
}

// finishForegroundDeletions stands in for the garbage collector on the
// cluster without kube-controller-manager: Jobs there have no pods, so a
// foreground deletion is complete as soon as the GC's finalizer is removed.
// Other finalizers (tests use them to hold a deletion) are left alone.
func finishForegroundDeletions(ctx context.Context, c client.Client, log logr.Logger) {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs); err != nil {
			continue
		}
		for i := range jobs.Items {
			job := &jobs.Items[i]
			if job.DeletionTimestamp == nil || !slices.Contains(job.Finalizers, metav1.FinalizerDeleteDependents) {
				continue
			}
			job.Finalizers = slices.DeleteFunc(job.Finalizers, func(f string) bool { return f == metav1.FinalizerDeleteDependents })
			if err := c.Update(ctx, job); err != nil {
				log.V(1).Info("finishing deletion", "job", job.Name, "err", err)
			}
		}
	}
}
