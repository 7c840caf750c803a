package singlecluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// env is the package's one kwok cluster. Tests use namespaces of their own;
// the one that needs the racks to itself (exclusive placement) runs before
// the parallel ones start.
var env *kwokEnv

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx := context.Background()
		start := time.Now()
		e, err := startKwokEnv(ctx, fmt.Sprintf("singlecluster-%d", os.Getpid()%100000))
		if err != nil {
			fmt.Fprintf(os.Stderr, "starting the kwok cluster: %v\n", err)
			return 1
		}
		env = e
		fmt.Fprintf(os.Stderr, "kwok cluster %s ready in %s (kubeconfig %s, context %s)\n",
			e.cluster.Name, time.Since(start).Round(time.Millisecond), e.cluster.KubeconfigPath, e.cluster.Context)
		code := m.Run()
		if err := waitForNamespacesGone(ctx, 2*time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
		if code != 0 {
			e.saveClusterLogs()
			fmt.Fprintf(os.Stderr, "logs of the controller and of the cluster's components are in %s\n", e.logDir)
		}
		e.stop(ctx)
		if code == 0 {
			_ = os.RemoveAll(e.workDir)
		}
		return code
	}())
}

// setLogger sends the controller's logs (verbosity 3) to path.
func setLogger(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.Level(-3)})))
	return nil
}

// deletedNamespaces are the test namespaces deleted so far.
var deletedNamespaces sync.Map

// waitForNamespacesGone waits until every deleted test namespace is gone:
// the namespace controller, the garbage collector and the kwok pod-delete
// stage have removed the JobSets, Jobs, pods and Services in them.
func waitForNamespacesGone(ctx context.Context, timeout time.Duration) error {
	var left []string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		left = nil
		deletedNamespaces.Range(func(name, _ any) bool {
			err := env.c.Get(ctx, client.ObjectKey{Name: name.(string)}, &corev1.Namespace{})
			if !apierrors.IsNotFound(err) {
				left = append(left, name.(string))
			}
			return true
		})
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("test namespaces %v not deleted within %s: %w", left, timeout, err)
	}
	return nil
}

// newNamespace creates a namespace for one test and deletes it when the test
// ends.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := env.c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNamespace(t, ns.Name)
		}
		// Deleted here, and waited for once all tests are done (see
		// TestMain), so the wait overlaps with the tests still running.
		if err := env.c.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
		deletedNamespaces.Store(ns.Name, true)
	})
	// Pods need the default ServiceAccount, which kube-controller-manager
	// creates shortly after the namespace.
	testenv.Eventually(t, time.Minute, "default ServiceAccount in "+ns.Name, func() error {
		return env.c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
	}, pollEvery)
	return ns.Name
}

// dumpNamespace logs what a user would look at when a test fails.
func dumpNamespace(t *testing.T, ns string) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"get", "jobsets,jobs,pods,services", "-o", "wide"},
		{"get", "jobsets", "-o", "yaml"},
		{"get", "events", "--sort-by=.lastTimestamp"},
	} {
		out, err := env.kubectl(ctx, append([]string{"-n", ns}, args...)...)
		t.Logf("$ kubectl -n %s %s\n%s%v", ns, strings.Join(args, " "), out, errOrEmpty(err))
	}
	t.Logf("controller log: %s", env.logDir)
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// kubectl runs bin/kubectl against the test cluster and fails the test on
// error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := env.kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// kubectlJSON runs kubectl with -o json and decodes the output into into.
func kubectlJSON(t *testing.T, into any, args ...string) {
	t.Helper()
	out := kubectl(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("decoding kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// podPhases records, from a watch, every phase each pod of a namespace went
// through, so a test can tell that pods really ran before they finished
// even when a poll would have missed the Running window.
type podPhases struct {
	mu     sync.Mutex
	phases map[string][]corev1.PodPhase
	labels map[string]map[string]string
}

func watchPodPhases(t *testing.T, ns string) *podPhases {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := env.c.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &podPhases{phases: map[string][]corev1.PodPhase{}, labels: map[string]map[string]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			p.mu.Lock()
			p.labels[pod.Name] = pod.Labels
			seen := p.phases[pod.Name]
			if len(seen) == 0 || seen[len(seen)-1] != pod.Status.Phase {
				p.phases[pod.Name] = append(seen, pod.Status.Phase)
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		cancel()
		<-done
	})
	return p
}

// seen returns the phases pod went through, in order.
func (p *podPhases) seen(pod string) []corev1.PodPhase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]corev1.PodPhase(nil), p.phases[pod]...)
}

// pods returns the names of every pod the watch saw, with their labels.
func (p *podPhases) pods() map[string]map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]map[string]string, len(p.labels))
	for name, labels := range p.labels {
		out[name] = labels
	}
	return out
}
