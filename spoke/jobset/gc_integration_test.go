package jobset_test

// Tests against the cluster running a real kube-controller-manager: the Job
// controller makes Pods and finishes Jobs, the garbage collector carries out
// foreground deletions. No kubelet runs, so tests finish Pods by setting
// their status.

import (
	"context"
	"fmt"
	"slices"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// pods lists the JobSet's pods that are not being deleted.
func (e *env) pods(t *testing.T, js *jobset.JobSet) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := e.c.List(context.Background(), &list, client.InNamespace(js.Namespace),
		client.MatchingLabels{jobset.JobSetNameKey: js.Name}); err != nil {
		t.Fatalf("listing pods: %v", err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

// waitPodOf waits for the pod of a Job (with parallelism 1) and returns it.
func (e *env) waitPodOf(t *testing.T, js *jobset.JobSet, job batchv1.Job) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	testenv.Eventually(t, gcTimeout, "pod of "+job.Name, func() error {
		for _, p := range e.pods(t, js) {
			if owner := metav1.GetControllerOf(&p); owner != nil && owner.UID == job.UID {
				pod = p
				return nil
			}
		}
		return fmt.Errorf("no pod yet")
	})
	return pod
}

// finishPod plays the kubelet: the pod ends in phase.
func (e *env) finishPod(t *testing.T, pod corev1.Pod, phase corev1.PodPhase) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &corev1.Pod{}
		if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(&pod), got); err != nil {
			return err
		}
		got.Status.Phase = phase
		exitCode := int32(0)
		if phase == corev1.PodFailed {
			exitCode = 1
		}
		got.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: "main", Image: "busybox",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Reason: "Completed", FinishedAt: metav1.Now()}},
		}}
		return e.c.Status().Update(context.Background(), got)
	})
	if err != nil {
		t.Fatalf("finishing pod %s: %v", pod.Name, err)
	}
}

func TestRestartWithRealJobControllerAndGarbageCollector(t *testing.T) {
	t.Parallel()
	e := gcEnv(t)
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "real").
		ReplicatedJob(rjob("a", 2, 1).Obj()).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 1}).
		Obj()
	e.create(t, js)

	first := e.waitJobs(t, js, []string{"real-a-0", "real-a-1"}, attempt(0))
	oldPods := []corev1.Pod{e.waitPodOf(t, js, first[0]), e.waitPodOf(t, js, first[1])}
	if oldPods[0].Spec.Subdomain != "real" || oldPods[0].Spec.Hostname != "real-a-0-0" {
		t.Errorf("pod hostname %q subdomain %q, want real-a-0-0 / real", oldPods[0].Spec.Hostname, oldPods[0].Spec.Subdomain)
	}
	if oldPods[0].Labels[jobset.JobKey] == "" || oldPods[0].Labels[jobset.RestartsKey] != "0" {
		t.Errorf("pod labels %v lack the JobSet's", oldPods[0].Labels)
	}

	// The pod fails; with backoffLimit 0 the Job controller fails the Job.
	e.finishPod(t, oldPods[0], corev1.PodFailed)
	testenv.Eventually(t, gcTimeout, "JobSet restarted", func() error {
		if got := e.jobSet(t, js); got.Status.Restarts != 1 {
			return fmt.Errorf("restarts %d", got.Status.Restarts)
		}
		return nil
	})

	// Old Jobs and their pods go away (foreground deletion), new ones come.
	var second []batchv1.Job
	testenv.Eventually(t, gcTimeout, "Jobs of attempt 1", func() error {
		second = e.jobs(t, js)
		if len(second) != 2 {
			return fmt.Errorf("Jobs %v", names(second))
		}
		for _, j := range second {
			if err := attempt(1)(j); err != nil {
				return err
			}
		}
		return nil
	})
	oldUIDs := []types.UID{first[0].UID, first[1].UID}
	testenv.Eventually(t, gcTimeout, "old pods deleted, new pods created", func() error {
		pods := e.pods(t, js)
		for _, p := range pods {
			if owner := metav1.GetControllerOf(&p); owner != nil && slices.Contains(oldUIDs, owner.UID) {
				return fmt.Errorf("pod %s of the old attempt still exists", p.Name)
			}
		}
		if len(pods) != 2 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})
	for _, uid := range oldUIDs {
		var jobs batchv1.JobList
		if err := e.c.List(context.Background(), &jobs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs.Items {
			if j.UID == uid {
				t.Errorf("old Job %s still exists", j.Name)
			}
		}
	}

	// Both pods of the new attempt succeed: the JobSet completes.
	for _, j := range second {
		e.finishPod(t, e.waitPodOf(t, js, j), corev1.PodSucceeded)
	}
	testenv.Eventually(t, gcTimeout, "JobSet completed", func() error {
		got := e.jobSet(t, js)
		if got.Status.TerminalState != "Completed" {
			return fmt.Errorf("terminalState %q, conditions %v", got.Status.TerminalState, got.Status.Conditions)
		}
		return nil
	})
}

func TestTTLAfterFinishedDeletesTheJobSet(t *testing.T) {
	t.Parallel()
	e := gcEnv(t)
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "ttl").
		ReplicatedJob(rjob("a", 1, 1).Obj()).
		TTLSecondsAfterFinished(3).
		Obj()
	e.create(t, js)
	jobs := e.waitJobs(t, js, []string{"ttl-a-0"}, nil)
	e.finishPod(t, e.waitPodOf(t, js, jobs[0]), corev1.PodSucceeded)
	testenv.Eventually(t, gcTimeout, "JobSet completed", func() error {
		got := &jobset.JobSet{}
		if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(js), got); err != nil {
			return err
		}
		if got.Status.TerminalState != "Completed" {
			return fmt.Errorf("terminalState %q", got.Status.TerminalState)
		}
		return nil
	})

	testenv.Eventually(t, gcTimeout, "JobSet deleted after its TTL", func() error {
		got := &jobset.JobSet{}
		err := e.c.Get(context.Background(), client.ObjectKeyFromObject(js), got)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("JobSet still exists (terminalState %q, deleting %v)", got.Status.TerminalState, got.DeletionTimestamp != nil)
	})
	testenv.Eventually(t, gcTimeout, "children deleted", func() error {
		var jobs batchv1.JobList
		if err := e.c.List(context.Background(), &jobs, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(jobs.Items) != 0 {
			return fmt.Errorf("%d Jobs left", len(jobs.Items))
		}
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ttl"}, &corev1.Service{})
		if !isNotFound(err) {
			return fmt.Errorf("Service left (%v)", err)
		}
		return nil
	})
}
