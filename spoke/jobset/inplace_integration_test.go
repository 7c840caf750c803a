package jobset_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	jobsetcontroller "github.com/jobset-fleet/jobset-fleet/spoke/jobset"
)

// In-place restart (InPlaceRestart gate) on a real apiserver with the Job
// controller making real Pods. The test plays upstream's
// in-place-restart-agent (cmd/in-place-restart-agent of v0.12.0): each pod's
// agent writes the attempt it is at in the pod annotation
// jobsetcontroller.sigs.k8s.io/in-place-restart-attempt and waits for the JobSet
// status to lift the barrier (currentInPlaceRestartAttempt) or to ask it to
// restart (previousInPlaceRestartAttempt). No Job is ever recreated.
func TestInPlaceRestartBarrierOnRealPods(t *testing.T) {
	features.SetForTest(t, features.InPlaceRestart, true)
	cluster := testenv.Start(t, "jobset-inplace", testenv.WithControllerManager())
	e := startEnv(cluster, false) // the gate is read when the controller is set up
	t.Cleanup(e.stop)
	ns := e.namespace(t)

	rj := rjob("w", 2, 1).BackoffLimit(math.MaxInt32).Obj()
	rj.Template.Spec.PodReplacementPolicy = ptr.To(batchv1.Failed)
	js := jstesting.MakeJobSet(ns, "ipr").ReplicatedJob(rj).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 2, RestartStrategy: jobset.InPlaceRestart}).Obj()
	e.create(t, js)

	var pods []corev1.Pod
	testenv.Eventually(t, gcTimeout, "a pod per Job", func() error {
		if pods = e.pods(t, js); len(pods) != 2 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})
	jobUIDs := map[types.UID]bool{}
	for _, j := range e.jobs(t, js) {
		jobUIDs[j.UID] = true
	}
	report := func(pod corev1.Pod, attempt string) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			got := &corev1.Pod{}
			if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}, got); err != nil {
				return err
			}
			if got.Annotations == nil {
				got.Annotations = map[string]string{}
			}
			got.Annotations[jobset.InPlaceRestartAttemptKey] = attempt
			return e.c.Update(context.Background(), got)
		})
		if err != nil {
			t.Fatalf("reporting attempt %s on pod %s: %v", attempt, pod.Name, err)
		}
	}
	attempts := func(previous, current *int32) {
		t.Helper()
		testenv.Eventually(t, timeout, fmt.Sprintf("previous=%v current=%v", ptr.Deref(previous, -1), ptr.Deref(current, -1)), func() error {
			st := e.jobSet(t, js).Status
			if ptr.Deref(st.PreviousInPlaceRestartAttempt, -1) != ptr.Deref(previous, -1) || ptr.Deref(st.CurrentInPlaceRestartAttempt, -1) != ptr.Deref(current, -1) {
				return fmt.Errorf("previous=%v current=%v", ptr.Deref(st.PreviousInPlaceRestartAttempt, -1), ptr.Deref(st.CurrentInPlaceRestartAttempt, -1))
			}
			return nil
		})
	}

	// Both agents start at attempt 0: the barrier lifts.
	report(pods[0], "0")
	report(pods[1], "0")
	attempts(nil, ptr.To[int32](0))

	// Pod 0's worker failed and its agent restarted it in place: pod 1 is
	// asked to restart too; the barrier holds until it did.
	report(pods[0], "1")
	attempts(ptr.To[int32](0), ptr.To[int32](0))
	report(pods[1], "1")
	attempts(ptr.To[int32](0), ptr.To[int32](1))

	// Still the same Jobs: nothing was recreated.
	for _, j := range e.jobs(t, js) {
		if !jobUIDs[j.UID] {
			t.Errorf("Job %s was recreated by an in-place restart", j.Name)
		}
	}

	// An attempt past maxRestarts (2) fails the JobSet as upstream does.
	report(pods[0], "3")
	e.waitCondition(t, js, string(jobset.JobSetFailed), metav1.ConditionTrue, jobsetcontroller.ReasonReachedMaxRestarts)
}
