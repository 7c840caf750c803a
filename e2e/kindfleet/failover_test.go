package kindfleet_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// The hub's member-lost timeout in overlays/hub; the agents fence after
// 8s (overlays/agent).
const memberLostTimeout = 20 * time.Second

// TestFailover: a member whose agent is gone keeps running its pods (the
// kubelet does not need the agent), so the hub must not start a second copy
// on time alone. It waits for a confirmed fence, and says so; once an
// operator has stopped the copy and marked the member out of service, the
// JobSet moves to the other member. A sampler checks throughout that at
// most one member runs pods of the JobSet. Every pod sees its copy's
// placement epoch (the workload prints $JOBSET_FLEET_EPOCH): the hub's,
// and greater after the move.
func TestFailover(t *testing.T) {
	ns := newNamespace(t, "kf-failover")
	const js = "failover"
	ctx := context.Background()
	// Not pinned (a pinned JobSet cannot move): a selector both members
	// match. A move is a restart of the JobSet (its copy was lost), so it
	// needs a restart budget, as for any other restart.
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
  annotations:
    fleet.jobset.x-k8s.io/cluster-selector: %[3]s=%[4]s
spec:
  failurePolicy:
    maxRestarts: 1
  replicatedJobs:
  - name: workers
    template:
      spec:
        parallelism: 2
        completions: 2
        backoffLimit: 0
        template:
          spec:
            terminationGracePeriodSeconds: 5
            containers:
            - name: worker
              image: %[2]s
              args: [--hold, --timeout=30m, --print-env=%[5]s]
`, js, env.images.workload, poolLabel, poolValue, fleet.EpochEnvVar))

	var from *kindCluster
	eventually(t, jobSetTimeout, "JobSet placed with 2 Running pods", func() (bool, string, error) {
		hubJS, err := getHubJobSet(ctx, ns, js)
		if err != nil {
			return false, "", err
		}
		if placedOn(hubJS) == "" {
			return false, describe(hubJS), nil
		}
		from = member(t, placedOn(hubJS))
		running, _, err := countPods(ctx, from, ns, js)
		return running == 2, fmt.Sprintf("%s; %d Running on %s", describe(hubJS), running, from.name), err
	})
	to := otherMember(from.name)
	t.Logf("running on %s; the other member is %s", from.name, to.name)
	firstEpoch := checkPodEpochs(t, from, ns, js)

	s := startSampler(t, ns, js)

	// The member's agent goes away for good (as far as the hub can tell).
	t.Logf("scaling the agent on %s to 0", from.name)
	restoreMember(t, from)
	if _, err := env.kubectlCmd(ctx, from, nil, "-n", systemNamespace, "scale", "deployment/"+agentDeployment, "--replicas=0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "agent pods on "+from.name+" gone", func() (bool, string, error) {
		list := &corev1.PodList{}
		err := from.c.List(ctx, list, client.InNamespace(systemNamespace), client.MatchingLabels{"app.kubernetes.io/component": "agent"})
		return err == nil && len(list.Items) == 0, fmt.Sprintf("%d agent pods", len(list.Items)), err
	})
	stopped := time.Now()

	// Past the member-lost timeout the hub must still hold the JobSet on
	// that member and say what it waits for.
	time.Sleep(memberLostTimeout + 10*time.Second)
	var stale *jobset.JobSet
	eventually(t, 30*time.Second, "MemberStatusStale=True, reason AwaitingFence", func() (bool, string, error) {
		var err error
		if stale, err = getHubJobSet(ctx, ns, js); err != nil {
			return false, "", err
		}
		c := apimeta.FindStatusCondition(stale.Status.Conditions, conditionMemberStale)
		return c != nil && c.Status == "True" && c.Reason == reasonAwaitingFence, describe(stale), nil
	})
	if got := placedOn(stale); got != from.name {
		t.Fatalf("%s after the agent stopped: the hub moved the JobSet to %q without a confirmed fence: %s", time.Since(stopped).Round(time.Second), got, describe(stale))
	}
	msg := apimeta.FindStatusCondition(stale.Status.Conditions, conditionMemberStale).Message
	if !strings.Contains(msg, fleet.OutOfServiceLabel) {
		t.Errorf("the AwaitingFence message does not name the confirming command (label %s): %q", fleet.OutOfServiceLabel, msg)
	}
	t.Logf("hub after %s: %q", time.Since(stopped).Round(time.Second), msg)
	if running, total, err := countPods(ctx, to, ns, js); err != nil {
		t.Fatal(err)
	} else if total != 0 {
		t.Fatalf("%d pods (%d Running) of the JobSet on %s before any fence was confirmed", total, running, to.name)
	}

	// The operator stops the copy by hand and confirms it. The copy's Jobs
	// go first (foreground): nothing of it may run once the member is marked.
	t.Logf("operator: kubectl delete jobset on %s, then label its ClusterProfile out of service", from.name)
	if _, err := env.kubectlCmd(ctx, from, nil, "-n", ns, "delete", "jobset", js, "--cascade=foreground", "--wait=false"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the copy on "+from.name+" stopped (no Jobs, no pods)", func() (bool, string, error) {
		_, total, err := countPods(ctx, from, ns, js)
		if err != nil {
			return false, "", err
		}
		jobs := &batchv1.JobList{}
		if err := from.c.List(ctx, jobs, client.InNamespace(ns), client.MatchingLabels{jobSetNameLabel: js}); err != nil {
			return false, "", err
		}
		return total == 0 && len(jobs.Items) == 0, fmt.Sprintf("%d pods, %d Jobs", total, len(jobs.Items)), nil
	})
	// What the operator deleted stays Terminating, held by the agent's
	// report finalizer until the agent returns (README: "When a member goes
	// silent"); nothing else may hold it, and nothing of it runs.
	copyJS := &jobset.JobSet{}
	switch err := from.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: js}, copyJS); {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	case copyJS.DeletionTimestamp == nil || !slices.Contains(copyJS.Finalizers, fleet.ReportFinalizer) ||
		slices.ContainsFunc(copyJS.Finalizers, func(f string) bool { return f != fleet.ReportFinalizer && f != metav1.FinalizerDeleteDependents }):
		t.Errorf("the copy on %s after kubectl delete: deleting %t, finalizers %v; want it deleting, held by %s only",
			from.name, copyJS.DeletionTimestamp != nil, copyJS.Finalizers, fleet.ReportFinalizer)
	default:
		t.Logf("the copy on %s stays Terminating under %s until its agent returns", from.name, fleet.ReportFinalizer)
	}
	if _, err := env.kubectlCmd(ctx, env.hub, nil, "label", "clusterprofile", "-n", fleet.DefaultInventoryNamespace, from.name, fleet.OutOfServiceLabel+"=true"); err != nil {
		t.Fatal(err)
	}

	eventually(t, 2*time.Minute, "the JobSet running on "+to.name+", and the hub showing it there", func() (bool, string, error) {
		hubJS, err := getHubJobSet(ctx, ns, js)
		if err != nil {
			return false, "", err
		}
		running, _, err := countPods(ctx, to, ns, js)
		if err != nil {
			return false, "", err
		}
		return placedOn(hubJS) == to.name && running == 2, fmt.Sprintf("%s; %d Running on %s", describe(hubJS), running, to.name), nil
	})
	if hubJS, err := getHubJobSet(ctx, ns, js); err != nil {
		t.Fatal(err)
	} else if hubJS.Status.Restarts != 1 {
		t.Errorf("the hub shows %d restarts after the move, want 1: %s", hubJS.Status.Restarts, describe(hubJS))
	}
	if movedEpoch := checkPodEpochs(t, to, ns, js); movedEpoch <= firstEpoch {
		t.Errorf("epoch %d after the move, want more than the %d before it: a checkpoint writer could not tell the old copy from the new", movedEpoch, firstEpoch)
	}
	s.stop(t)
}

// checkPodEpochs checks that every pod of the JobSet on kc sees the hub
// JobSet's placement epoch, from inside its container (the workload logs
// $JOBSET_FLEET_EPOCH at start) and on its annotation, and returns it.
func checkPodEpochs(t *testing.T, kc *kindCluster, ns, js string) int64 {
	t.Helper()
	ctx := context.Background()
	hubJS, err := getHubJobSet(ctx, ns, js)
	if err != nil {
		t.Fatal(err)
	}
	if hubJS.Status.Fleet == nil || hubJS.Status.Fleet.Epoch == 0 {
		t.Fatalf("the hub shows no epoch: %s", describe(hubJS))
	}
	epoch := hubJS.Status.Fleet.Epoch
	want := fmt.Sprintf("%s=%d", fleet.EpochEnvVar, epoch)
	eventually(t, time.Minute, fmt.Sprintf("every pod on %s logs %s", kc.name, want), func() (bool, string, error) {
		list, err := pods(ctx, kc, ns, js)
		if err != nil {
			return false, "", err
		}
		if len(list) == 0 {
			return false, "no pods", nil
		}
		for _, p := range list {
			if got := p.Annotations[fleet.PodEpochAnnotation]; got != strconv.FormatInt(epoch, 10) {
				return false, fmt.Sprintf("pod %s: annotation %s=%q", p.Name, fleet.PodEpochAnnotation, got), nil
			}
			log, err := podLog(ctx, kc, ns, p.Name)
			if err != nil {
				return false, "", err
			}
			if !slices.ContainsFunc(strings.Split(log, "\n"), func(line string) bool { return strings.HasSuffix(line, " "+want) }) {
				return false, fmt.Sprintf("pod %s logged %q", p.Name, tail(log, 5)), nil
			}
		}
		return true, "", nil
	})
	t.Logf("every pod on %s sees epoch %d, the hub's", kc.name, epoch)
	return epoch
}

// countPods counts a JobSet's pods on a member: Running ones, and all.
func countPods(ctx context.Context, kc *kindCluster, ns, js string) (running, total int, err error) {
	list, err := pods(ctx, kc, ns, js)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range list {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	return running, len(list), nil
}

// sampler polls both members every 200ms and records any moment at which
// more than one member had Running pods of the JobSet.
type sampler struct {
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples int
	overlap []string
}

func startSampler(t *testing.T, ns, js string) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var runningOn []string
			for _, kc := range env.memberList() {
				if running, _, err := countPods(ctx, kc, ns, js); err == nil && running > 0 {
					runningOn = append(runningOn, fmt.Sprintf("%s (%d Running)", kc.name, running))
				}
			}
			s.mu.Lock()
			s.samples++
			if len(runningOn) > 1 {
				s.overlap = append(s.overlap, time.Now().Format("15:04:05.000")+": "+strings.Join(runningOn, ", "))
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { s.cancel(); <-s.done })
	return s
}

// stop ends sampling and fails the test if two members ever ran the JobSet.
func (s *sampler) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.overlap) > 0 {
		t.Errorf("two live copies in %d of %d samples, first: %s", len(s.overlap), s.samples, strings.Join(s.overlap[:min(5, len(s.overlap))], "; "))
	} else {
		t.Logf("at most one member ran the JobSet in all %d samples", s.samples)
	}
}

// restoreMember brings a member back after the test: its agent scaled up
// again, the out-of-service label removed, healthy on the hub.
func restoreMember(t *testing.T, kc *kindCluster) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if _, err := env.kubectlCmd(ctx, env.hub, nil, "label", "clusterprofile", "-n", fleet.DefaultInventoryNamespace, kc.name, fleet.OutOfServiceLabel+"-"); err != nil {
			t.Logf("cleanup: %v", err)
		}
		if _, err := env.kubectlCmd(ctx, kc, nil, "-n", systemNamespace, "scale", "deployment/"+agentDeployment, fmt.Sprintf("--replicas=%d", agentReplicas)); err != nil {
			t.Logf("cleanup: %v", err)
		}
		if _, err := env.kubectlCmd(ctx, kc, nil, "-n", systemNamespace, "rollout", "status", "deployment/"+agentDeployment, "--timeout=3m"); err != nil {
			t.Logf("cleanup: %v", err)
		}
		if err := env.waitMemberHealthy(ctx, kc.name, 2*time.Minute); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}
