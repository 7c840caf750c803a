package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestCopiesKeepTheirHistory runs a member with kube-controller-manager (Job
// controller, garbage collector), playing the kubelet by setting pod phases:
//   - a copy with ttlSecondsAfterFinished 0 that completes while the agent is
//     cut off from the hub is deleted by its TTL but held until its result
//     reached the hub, and never runs again;
//   - a copy deleted by hand is created again with the restarts it had
//     spent, and the restarts the hub sees never go backwards.
func TestCopiesKeepTheirHistory(t *testing.T) {
	hub := testenv.Start(t, "history-hub")
	member := testenv.Start(t, "history-member", testenv.WithControllerManager())
	ctx := context.Background()
	hubURL, err := url.Parse(hub.Config.Host)
	must(t, err)
	proxy, err := testenv.StartProxy(hubURL.Host)
	must(t, err)
	t.Cleanup(proxy.Cut)
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName: clusterName, HubServerURL: "https://" + proxy.Addr, HubCAData: hub.Config.CAData, SkipCRDs: true,
	})
	must(t, err)
	agentCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)
	a := startAgent(t, t.Cleanup, member, agentCfg)

	t.Run("a copy finished and deleted by its TTL during a partition never runs again", func(t *testing.T) {
		d := newDispatch("team-ttl", "once", 1)
		d.Spec.JobSet.Spec.TTLSecondsAfterFinished = ptr.To[int32](0)
		must(t, hub.Client.Create(ctx, d))
		first := waitMemberJobSet(t, member.Client, "team-ttl", "once", nil)
		if !slices.Contains(first.Finalizers, fleet.ReportFinalizer) {
			t.Errorf("copy finalizers %v, want %s", first.Finalizers, fleet.ReportFinalizer)
		}
		waitPods(t, member.Client, "team-ttl", "once", 2)

		proxy.Cut()
		finishPods(t, member.Client, "team-ttl", "once", corev1.PodSucceeded)
		// Completed, deleted by the TTL, Jobs gone: held for the report.
		testenv.Eventually(t, 60*time.Second, "the finished copy deleted by its TTL, its Jobs gone", func() error {
			js := &jobset.JobSet{}
			if err := member.Client.Get(ctx, client.ObjectKeyFromObject(first), js); err != nil {
				return err
			}
			if js.DeletionTimestamp == nil || js.Status.TerminalState != string(jobset.JobSetCompleted) {
				return fmt.Errorf("deleting %v, terminal state %q", js.DeletionTimestamp != nil, js.Status.TerminalState)
			}
			if n := len(memberJobs(t, member.Client, "team-ttl", "once")); n != 0 {
				return fmt.Errorf("%d Jobs left", n)
			}
			return nil
		})
		if got := getDispatch(t, hub.Client, d.Name); got.Status.JobSetStatus.TerminalState != "" {
			t.Fatalf("the hub learned the result through the cut: %+v", got.Status)
		}
		testenv.Eventually(t, 3*fenceTimeout, "the agent fenced", func() error {
			if !a.Fenced() {
				return errors.New("not fenced")
			}
			return nil
		})

		must(t, proxy.Heal())
		testenv.Eventually(t, 60*time.Second, "the result at the hub and the copy released", func() error {
			got := getDispatch(t, hub.Client, d.Name)
			if got.Status.JobSetStatus.TerminalState != string(jobset.JobSetCompleted) || got.Status.ObservedEpoch != 1 {
				return fmt.Errorf("dispatch status %+v", got.Status)
			}
			return gone(member.Client, memberJobSet("team-ttl", "once").Obj())
		})
		// And it stays gone: no second run.
		testenv.Consistently(t, 5*time.Second, "the finished JobSet gone, not run again", func() error {
			if err := gone(member.Client, memberJobSet("team-ttl", "once").Obj()); err != nil {
				return fmt.Errorf("created again: %w", err)
			}
			if n := len(memberJobs(t, member.Client, "team-ttl", "once")); n != 0 {
				return fmt.Errorf("runs again: %d Jobs", n)
			}
			return nil
		}, testenv.Every(200*time.Millisecond))
	})

	t.Run("a copy deleted by hand comes back with its restarts", func(t *testing.T) {
		d := newDispatch("team-hand", "resilient", 1)
		d.Spec.JobSet.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 5}
		d.Spec.JobSet.Spec.ReplicatedJobs[0].Replicas = 1
		d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.BackoffLimit = ptr.To[int32](0)
		must(t, hub.Client.Create(ctx, d))
		first := waitMemberJobSet(t, member.Client, "team-hand", "resilient", nil)

		// Watch the restarts the hub sees: they never go backwards.
		var seen []int32
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				got := &fleet.JobSetDispatch{}
				if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(d), got); err == nil {
					if n := len(seen); n == 0 || seen[n-1] != got.Status.JobSetStatus.Restarts {
						seen = append(seen, got.Status.JobSetStatus.Restarts)
					}
				}
			}
		}()

		// One failure: the JobSet restarts once, and the hub hears of it.
		waitPods(t, member.Client, "team-hand", "resilient", 1)
		finishPods(t, member.Client, "team-hand", "resilient", corev1.PodFailed)
		testenv.Eventually(t, 60*time.Second, "one restart reported to the hub", func() error {
			if got := getDispatch(t, hub.Client, d.Name); got.Status.JobSetStatus.Restarts != 1 {
				return fmt.Errorf("restarts %d", got.Status.JobSetStatus.Restarts)
			}
			return nil
		})

		// Deleted by hand (kubectl's background deletion).
		must(t, member.Client.Delete(ctx, first, client.PropagationPolicy(metav1.DeletePropagationBackground)))
		again := waitMemberJobSet(t, member.Client, "team-hand", "resilient", func(js *jobset.JobSet) error {
			if js.UID == first.UID {
				return errors.New("not created again yet")
			}
			return nil
		})
		type carried struct {
			RestartsOffset, RestartsTowardsMaxOffset string
			MaxRestarts                              *int32
		}
		got := carried{RestartsOffset: again.Annotations[fleet.RestartsOffsetAnnotation],
			RestartsTowardsMaxOffset: again.Annotations[fleet.RestartsTowardsMaxOffsetAnnotation]}
		if fp := again.Spec.FailurePolicy; fp != nil {
			got.MaxRestarts = &fp.MaxRestarts
		}
		if d := cmp.Diff(carried{"1", "1", ptr.To[int32](4)}, got); d != "" {
			t.Errorf("copy created again: restarts carried (-want +got):\n%s", d)
		}
		for _, j := range memberJobs(t, member.Client, "team-hand", "resilient") {
			if owner := metav1.GetControllerOf(&j); owner != nil && owner.UID == first.UID {
				t.Errorf("Job %s of the deleted copy outlived it", j.Name)
			}
		}

		// Another failure on the new copy: 2 in all.
		waitPodsOf(t, member.Client, "team-hand", "resilient", again.UID, 1)
		finishPods(t, member.Client, "team-hand", "resilient", corev1.PodFailed)
		testenv.Eventually(t, 60*time.Second, "two restarts reported to the hub", func() error {
			if got := getDispatch(t, hub.Client, d.Name); got.Status.JobSetStatus.Restarts != 2 || got.Status.JobSetStatus.RestartsCountTowardsMax != 2 {
				return fmt.Errorf("restarts %d, towards max %d", got.Status.JobSetStatus.Restarts, got.Status.JobSetStatus.RestartsCountTowardsMax)
			}
			return nil
		})
		close(stop)
		<-watched
		if !slices.IsSorted(seen) {
			t.Errorf("the hub saw restarts go backwards: %v", seen)
		}
	})

	t.Run("the fencer's delete does not wait for the hub; the copy comes back after", func(t *testing.T) {
		a.stop()
		a = startAgent(t, t.Cleanup, member, agentCfg, func(o *agent.Options) { o.FenceAction = agent.FenceDelete })
		d := newDispatch("team-fence", "cut", 1)
		must(t, hub.Client.Create(ctx, d))
		first := waitMemberJobSet(t, member.Client, "team-fence", "cut", nil)
		testenv.Eventually(t, 20*time.Second, "2 Jobs", func() error {
			if n := len(memberJobs(t, member.Client, "team-fence", "cut")); n != 2 {
				return fmt.Errorf("%d Jobs", n)
			}
			return nil
		})
		proxy.Cut()
		testenv.Eventually(t, 3*fenceTimeout+30*time.Second, "the fenced copy and its Jobs deleted", func() error {
			if n := len(memberJobs(t, member.Client, "team-fence", "cut")); n != 0 {
				return fmt.Errorf("%d Jobs while fenced", n)
			}
			return gone(member.Client, memberJobSet("team-fence", "cut").Obj())
		})
		must(t, proxy.Heal())
		waitMemberJobSet(t, member.Client, "team-fence", "cut", func(js *jobset.JobSet) error {
			if js.UID == first.UID || js.IsSuspended() {
				return fmt.Errorf("uid %s (first %s), suspended %v", js.UID, first.UID, js.IsSuspended())
			}
			return nil
		})
	})
}

func memberPods(t *testing.T, c client.Client, ns, jobSet string) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	must(t, c.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: jobSet}))
	return pods.Items
}

func waitPods(t *testing.T, c client.Client, ns, jobSet string, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d pods of %s", n, jobSet), func() error {
		if got := len(memberPods(t, c, ns, jobSet)); got != n {
			return fmt.Errorf("%d pods, want %d", got, n)
		}
		return nil
	})
}

// waitPodsOf waits for n pending pods of Jobs owned by the JobSet with uid.
func waitPodsOf(t *testing.T, c client.Client, ns, jobSet string, uid types.UID, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d pending pods of %s %s", n, jobSet, uid), func() error {
		owned := map[string]bool{}
		for _, j := range memberJobs(t, c, ns, jobSet) {
			if owner := metav1.GetControllerOf(&j); owner != nil && owner.UID == uid {
				owned[j.Name] = true
			}
		}
		got := 0
		for _, p := range memberPods(t, c, ns, jobSet) {
			if owned[p.Labels[batchv1.JobNameLabel]] && p.Status.Phase == corev1.PodPending && p.DeletionTimestamp == nil {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d pending pods of the new copy, want %d", got, n)
		}
		return nil
	})
}

// finishPods plays the kubelet: every pending or running pod of the JobSet
// ends in phase.
func finishPods(t *testing.T, c client.Client, ns, jobSet string, phase corev1.PodPhase) {
	t.Helper()
	for _, p := range memberPods(t, c, ns, jobSet) {
		if p.Status.Phase != corev1.PodPending && p.Status.Phase != corev1.PodRunning {
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			got := &corev1.Pod{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(&p), got); err != nil {
				return err
			}
			now := metav1.Now()
			exit := int32(0)
			if phase == corev1.PodFailed {
				exit = 1
			}
			got.Status.Phase = phase
			got.Status.StartTime = &now
			got.Status.ContainerStatuses = []corev1.ContainerStatus{{
				Name: got.Spec.Containers[0].Name, Image: got.Spec.Containers[0].Image,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, StartedAt: now, FinishedAt: now}},
			}}
			return c.Status().Update(context.Background(), got)
		})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}
