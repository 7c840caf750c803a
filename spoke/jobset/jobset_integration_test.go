package jobset_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

func TestChildJobsAndService(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	leader := rjob("leader", 1, 1)
	leader.Template.Spec.Template.Spec.RestartPolicy = "" // defaulted to OnFailure
	leader.Template.Labels = map[string]string{"team": "ml"}
	js := jstesting.MakeJobSet(ns, "pytorch").ReplicatedJob(leader.Obj(), rjob("workers", 2, 4).Obj()).Obj()
	e.create(t, js)
	js = e.jobSet(t, js)

	jobs := e.waitJobs(t, js, []string{"pytorch-leader-0", "pytorch-workers-0", "pytorch-workers-1"}, nil)
	for i, job := range jobs {
		rjobName, idx, replicas := "workers", i-1, "2"
		if i == 0 {
			rjobName, idx, replicas = "leader", 0, "1"
		}
		sum := sha1.Sum([]byte(ns + "/" + job.Name))
		want := map[string]string{
			jobset.JobSetNameKey:         "pytorch",
			jobset.ReplicatedJobNameKey:  rjobName,
			jobset.ReplicatedJobReplicas: replicas,
			jobset.JobIndexKey:           strconv.Itoa(idx),
			jobset.JobKey:                hex.EncodeToString(sum[:]),
			jobset.JobGlobalIndexKey:     strconv.Itoa(i),
			jobset.RestartsKey:           "0",
			jobset.GroupNameKey:          "default",
			jobset.GroupReplicasKey:      "3",
			jobset.JobGroupIndexKey:      strconv.Itoa(i),
			jobset.GlobalReplicasKey:     "3",
			jobset.JobSetUIDKey:          string(js.UID),
		}
		for where, m := range map[string]map[string]string{
			"Job labels": job.Labels, "Job annotations": job.Annotations,
			"pod labels": job.Spec.Template.Labels, "pod annotations": job.Spec.Template.Annotations,
		} {
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s %s: %s=%q, want %q", job.Name, where, k, m[k], v)
				}
			}
		}
		owner := metav1.GetControllerOf(&job)
		if owner == nil || owner.Kind != "JobSet" || owner.UID != js.UID {
			t.Errorf("%s: controller = %+v, want the JobSet", job.Name, owner)
		}
		if ptr.Deref(job.Spec.CompletionMode, "") != batchv1.IndexedCompletion {
			t.Errorf("%s: completionMode %v, want Indexed", job.Name, job.Spec.CompletionMode)
		}
		if job.Spec.Template.Spec.Subdomain != "pytorch" {
			t.Errorf("%s: subdomain %q, want pytorch", job.Name, job.Spec.Template.Spec.Subdomain)
		}
		if ptr.Deref(job.Spec.Suspend, false) {
			t.Errorf("%s: created suspended", job.Name)
		}
	}
	if got := jobs[0].Spec.Template.Spec.RestartPolicy; got != corev1.RestartPolicyOnFailure {
		t.Errorf("leader restartPolicy %q, want the OnFailure default", got)
	}
	if got := jobs[1].Spec.Template.Spec.RestartPolicy; got != corev1.RestartPolicyNever {
		t.Errorf("workers restartPolicy %q, want the template's Never", got)
	}
	if jobs[0].Labels["team"] != "ml" {
		t.Errorf("Job template labels not kept: %v", jobs[0].Labels)
	}

	svc := &corev1.Service{}
	testenv.Eventually(t, timeout, "headless Service", func() error {
		return e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "pytorch"}, svc)
	})
	type service struct {
		ClusterIP, LabelJobSet   string
		PublishNotReadyAddresses bool
		Selector                 map[string]string
	}
	want := service{ClusterIP: corev1.ClusterIPNone, LabelJobSet: "pytorch", PublishNotReadyAddresses: true,
		Selector: map[string]string{jobset.JobSetNameKey: "pytorch"}}
	got := service{ClusterIP: svc.Spec.ClusterIP, LabelJobSet: svc.Labels[jobset.JobSetNameKey],
		PublishNotReadyAddresses: svc.Spec.PublishNotReadyAddresses, Selector: svc.Spec.Selector}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Service (-want +got):\n%s", d)
	}
	if owner := metav1.GetControllerOf(svc); owner == nil || owner.UID != js.UID {
		t.Errorf("Service controller = %+v, want the JobSet", owner)
	}

	// A deleted Service comes back.
	if err := e.c.Delete(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, timeout, "Service recreated", func() error {
		again := &corev1.Service{}
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "pytorch"}, again); err != nil {
			return err
		}
		if again.UID == svc.UID {
			return fmt.Errorf("still the old Service")
		}
		return nil
	})
}

func TestNoServiceWithoutDNSHostnames(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "nodns").
		ReplicatedJob(rjob("a", 1, 1).Obj()).
		Network(&jobset.Network{EnableDNSHostnames: ptr.To(false)}).
		Obj()
	e.create(t, js)
	jobs := e.waitJobs(t, js, []string{"nodns-a-0"}, nil)
	if jobs[0].Spec.Template.Spec.Subdomain != "" {
		t.Errorf("subdomain %q, want none", jobs[0].Spec.Template.Spec.Subdomain)
	}
	testenv.Consistently(t, 2*time.Second, "no Service", func() error {
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "nodns"}, &corev1.Service{})
		if !isNotFound(err) {
			return fmt.Errorf("Service exists (or error %v)", err)
		}
		return nil
	})
}

func TestGenerateNameServiceIsNamedAfterTheJobSet(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "").
		ReplicatedJob(rjob("a", 1, 1).Obj()).
		GenerateName("gen-").
		Obj()
	e.create(t, js)
	testenv.Eventually(t, timeout, "Service named after the JobSet", func() error {
		return e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: js.Name}, &corev1.Service{})
	})
	jobs := e.waitJobs(t, js, []string{js.Name + "-a-0"}, nil)
	if jobs[0].Spec.Template.Spec.Subdomain != js.Name {
		t.Errorf("subdomain %q, want %q", jobs[0].Spec.Template.Spec.Subdomain, js.Name)
	}
}

func TestCoordinatorAndExclusiveTopology(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	workers := rjob("workers", 2, 1)
	workers.Template.Annotations = map[string]string{jobset.ExclusiveKey: "zone"}
	js := jstesting.MakeJobSet(ns, "coord").
		ReplicatedJob(rjob("leader", 1, 1).Obj(), workers.Obj()).
		Annotation(jobset.ExclusiveKey, "rack").
		Annotation(jobset.NodeSelectorStrategyKey, "true").
		Coordinator(&jobset.Coordinator{ReplicatedJob: "leader", JobIndex: 0, PodIndex: 0}).
		Obj()
	e.create(t, js)
	jobs := e.waitJobs(t, js, []string{"coord-leader-0", "coord-workers-0", "coord-workers-1"}, nil)
	for _, job := range jobs {
		for _, m := range []map[string]string{job.Labels, job.Annotations, job.Spec.Template.Labels, job.Spec.Template.Annotations} {
			if m[jobset.CoordinatorKey] != "coord-leader-0-0.coord" {
				t.Errorf("%s: coordinator %q, want coord-leader-0-0.coord", job.Name, m[jobset.CoordinatorKey])
			}
		}
		wantTopology := "rack"
		if job.Labels[jobset.ReplicatedJobNameKey] == "workers" {
			wantTopology = "zone"
		}
		if job.Annotations[jobset.ExclusiveKey] != wantTopology || job.Spec.Template.Annotations[jobset.ExclusiveKey] != wantTopology {
			t.Errorf("%s: exclusive topology %q/%q, want %q", job.Name, job.Annotations[jobset.ExclusiveKey], job.Spec.Template.Annotations[jobset.ExclusiveKey], wantTopology)
		}
	}
	// The node-selector strategy is set on the JobSet, so it applies where
	// the JobSet's exclusive-topology annotation does (the leader).
	leaderPod := jobs[0].Spec.Template.Spec
	if got := leaderPod.NodeSelector[jobset.NamespacedJobKey]; got != ns+"_coord-leader-0" {
		t.Errorf("leader nodeSelector %q, want %s_coord-leader-0", got, ns)
	}
	if !slices.ContainsFunc(leaderPod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == jobset.NoScheduleTaintKey && tol.Operator == corev1.TolerationOpExists && tol.Effect == corev1.TaintEffectNoSchedule
	}) {
		t.Errorf("leader tolerations %v lack the no-schedule toleration", leaderPod.Tolerations)
	}
}

func TestCompletesOnlyWhenAllJobsSucceed(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "all").ReplicatedJob(rjob("a", 2, 1).Obj(), rjob("b", 1, 2).Obj()).Obj()
	e.create(t, js)
	e.waitJobs(t, js, []string{"all-a-0", "all-a-1", "all-b-0"}, nil)

	// replicatedJobsStatus on creation, then as Jobs progress.
	wantStatus := func(want ...jobset.ReplicatedJobStatus) {
		t.Helper()
		testenv.Eventually(t, timeout, fmt.Sprintf("replicatedJobsStatus %+v", want), func() error {
			got := e.jobSet(t, js).Status.ReplicatedJobsStatus
			if !slices.EqualFunc(got, want, func(a, b jobset.ReplicatedJobStatus) bool {
				return a.Name == b.Name && a.Ready == b.Ready && a.Succeeded == b.Succeeded && a.Failed == b.Failed && a.Active == b.Active && a.Suspended == b.Suspended
			}) {
				return fmt.Errorf("got %+v", got)
			}
			return nil
		})
	}
	// Upstream stores the list in descending order of name.
	wantStatus(jobset.ReplicatedJobStatus{Name: "b"}, jobset.ReplicatedJobStatus{Name: "a"})
	e.markReady(t, ns, "all-a-0", "all-b-0")
	wantStatus(jobset.ReplicatedJobStatus{Name: "b", Ready: 1, Active: 1}, jobset.ReplicatedJobStatus{Name: "a", Ready: 1, Active: 1})

	e.markSucceeded(t, ns, "all-a-0", "all-b-0")
	wantStatus(jobset.ReplicatedJobStatus{Name: "b", Succeeded: 1}, jobset.ReplicatedJobStatus{Name: "a", Succeeded: 1})
	testenv.Consistently(t, 2*time.Second, "not complete with a Job still running", notFinished(t, e, js))

	e.markSucceeded(t, ns, "all-a-1")
	got := e.waitCondition(t, js, "Completed", metav1.ConditionTrue, "AllJobsCompleted")
	if got.Status.TerminalState != "Completed" {
		t.Errorf("terminalState %q, want Completed", got.Status.TerminalState)
	}
	wantStatus(jobset.ReplicatedJobStatus{Name: "b", Succeeded: 1}, jobset.ReplicatedJobStatus{Name: "a", Succeeded: 2})
	e.waitEvent(t, js, corev1.EventTypeNormal, "AllJobsCompleted")
}

func TestSuccessPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		policy    *jobset.SuccessPolicy
		succeed   []string
		completes bool
	}{
		{"All needs every Job", &jobset.SuccessPolicy{Operator: jobset.OperatorAll}, []string{"sp-leader-0", "sp-workers-0"}, false},
		{"Any needs one Job", &jobset.SuccessPolicy{Operator: jobset.OperatorAny}, []string{"sp-workers-1"}, true},
		{"Any with target, other replicatedJob", &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"leader"}}, []string{"sp-workers-0"}, false},
		{"Any with target", &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"leader"}}, []string{"sp-leader-0"}, true},
		{"All with target", &jobset.SuccessPolicy{Operator: jobset.OperatorAll, TargetReplicatedJobs: []string{"workers"}}, []string{"sp-workers-0", "sp-workers-1"}, true},
		{"All with target, partial", &jobset.SuccessPolicy{Operator: jobset.OperatorAll, TargetReplicatedJobs: []string{"workers"}}, []string{"sp-leader-0", "sp-workers-1"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := plain
			ns := e.namespace(t)
			js := jstesting.MakeJobSet(ns, "sp").
				ReplicatedJob(rjob("leader", 1, 1).Obj(), rjob("workers", 2, 1).Obj()).
				SuccessPolicy(tc.policy).
				Obj()
			e.create(t, js)
			e.waitJobs(t, js, []string{"sp-leader-0", "sp-workers-0", "sp-workers-1"}, nil)
			e.markReady(t, ns, "sp-leader-0", "sp-workers-0", "sp-workers-1")
			e.markSucceeded(t, ns, tc.succeed...)
			if !tc.completes {
				testenv.Consistently(t, 2*time.Second, "JobSet must not complete", notFinished(t, e, js))
				return
			}
			e.waitCondition(t, js, "Completed", metav1.ConditionTrue, "AllJobsCompleted")
			// The Jobs still running are deleted once the JobSet is done.
			testenv.Eventually(t, timeout, "active Jobs deleted", func() error {
				for _, j := range e.jobs(t, js) {
					if !slices.Contains(tc.succeed, j.Name) {
						return fmt.Errorf("%s still exists", j.Name)
					}
				}
				return nil
			})
		})
	}
}

func TestIgnoresJobsOfAnotherJobSetWithTheSameName(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "same").ReplicatedJob(rjob("a", 1, 1).Obj()).Obj()
	e.create(t, js)
	e.waitJobs(t, js, []string{"same-a-0"}, nil)

	// A failed Job controlled by an older JobSet of the same name.
	stranger := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "same-a-7",
			Labels: map[string]string{jobset.JobSetNameKey: "same", jobset.ReplicatedJobNameKey: "a", jobset.JobIndexKey: "0", jobset.RestartsKey: "0"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: jobset.GroupVersion.String(), Kind: "JobSet", Name: "same",
				UID: types.UID("00000000-0000-0000-0000-000000000001"), Controller: ptr.To(true),
			}},
		},
	}
	stranger.Spec = rjob("a", 1, 1).Template.Spec
	e.create(t, stranger)
	e.markFailed(t, ns, "same-a-7", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	testenv.Consistently(t, 2*time.Second, "JobSet must not fail because of another JobSet's Job", notFinished(t, e, js))
	if got := e.jobSet(t, js).Status.ReplicatedJobsStatus; len(got) != 1 || got[0].Failed != 0 {
		t.Errorf("replicatedJobsStatus %+v counts the stranger", got)
	}
	if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(stranger), &batchv1.Job{}); err != nil {
		t.Errorf("stranger Job touched: %v", err)
	}
}

func TestFailsAtOnceWithoutFailurePolicy(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "nofp").ReplicatedJob(rjob("a", 2, 1).Obj()).Obj()
	e.create(t, js)
	e.waitJobs(t, js, []string{"nofp-a-0", "nofp-a-1"}, nil)
	e.markFailed(t, ns, "nofp-a-1", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	got := e.waitCondition(t, js, "Failed", metav1.ConditionTrue, "FailedJobs")
	if got.Status.TerminalState != "Failed" || got.Status.Restarts != 0 {
		t.Errorf("terminalState %q restarts %d, want Failed 0", got.Status.TerminalState, got.Status.Restarts)
	}
	if note := e.waitEvent(t, js, corev1.EventTypeWarning, "FailedJobs"); !containsText(note, "nofp-a-1") {
		t.Errorf("event %q does not name the failed Job", note)
	}
	// The active Job is deleted; the failed one stays for inspection.
	e.waitJobs(t, js, []string{"nofp-a-1"}, nil)
}

func TestRestartsUpToMaxRestarts(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "maxr").
		ReplicatedJob(rjob("a", 2, 1).Obj()).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 1}).
		Obj()
	e.create(t, js)
	first := e.waitJobs(t, js, []string{"maxr-a-0", "maxr-a-1"}, attempt(0))

	e.markFailed(t, ns, "maxr-a-0", "BackoffLimitExceeded", "boom")
	second := e.waitJobs(t, js, []string{"maxr-a-0", "maxr-a-1"}, attempt(1))
	for i := range second {
		if second[i].UID == first[i].UID {
			t.Errorf("%s was not recreated", second[i].Name)
		}
		if second[i].Spec.Template.Labels[jobset.RestartsKey] != "1" {
			t.Errorf("%s pod template restart-attempt %q, want 1", second[i].Name, second[i].Spec.Template.Labels[jobset.RestartsKey])
		}
	}
	got := e.jobSet(t, js)
	if got.Status.Restarts != 1 || got.Status.RestartsCountTowardsMax != 1 {
		t.Errorf("restarts %d/%d, want 1/1", got.Status.Restarts, got.Status.RestartsCountTowardsMax)
	}
	e.waitEvent(t, js, corev1.EventTypeWarning, "RestartJobSetFailurePolicyAction")
	e.waitCondition(t, js, "RestartingJobSet", metav1.ConditionTrue, "DefaultFailurePolicy")
	e.markReady(t, ns, "maxr-a-0", "maxr-a-1")
	e.waitCondition(t, js, "RestartingJobSet", metav1.ConditionFalse, "JobsReady")

	e.markFailed(t, ns, "maxr-a-1", "BackoffLimitExceeded", "boom again")
	got = e.waitCondition(t, js, "Failed", metav1.ConditionTrue, "ReachedMaxRestarts")
	if got.Status.Restarts != 1 {
		t.Errorf("restarts %d after failing, want 1", got.Status.Restarts)
	}
	e.waitCondition(t, js, "RestartingJobSet", metav1.ConditionFalse, "JobSetFailed")
}

func TestSucceedsAfterOneRestart(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "once").
		ReplicatedJob(rjob("a", 2, 1).Obj()).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 3}).
		Obj()
	e.create(t, js)
	e.waitJobs(t, js, []string{"once-a-0", "once-a-1"}, attempt(0))
	e.markSucceeded(t, ns, "once-a-0")
	e.markFailed(t, ns, "once-a-1", "BackoffLimitExceeded", "boom")
	e.waitJobs(t, js, []string{"once-a-0", "once-a-1"}, attempt(1))
	e.markSucceeded(t, ns, "once-a-0", "once-a-1")
	got := e.waitCondition(t, js, "Completed", metav1.ConditionTrue, "AllJobsCompleted")
	if got.Status.Restarts != 1 || got.Status.TerminalState != "Completed" {
		t.Errorf("restarts %d terminalState %q, want 1 Completed", got.Status.Restarts, got.Status.TerminalState)
	}
}

func TestFailurePolicyRules(t *testing.T) {
	t.Parallel()
	const (
		exit42  = "Container main for pod x failed with exit code 42 matching FailJob rule at index 0"
		evicted = "Pod x has condition DisruptionTarget matching FailJob rule at index 1"
	)
	type failure struct{ job, reason, message string }
	tests := []struct {
		name  string
		rules []jobset.FailurePolicyRule
		fail  failure
		// wantFailed is the Failed reason, or "" when the JobSet restarts.
		wantFailed    string
		wantRestarts  int32
		wantCounted   int32
		wantEvent     string
		wantRestartBy string
	}{
		{"reason matches", []jobset.FailurePolicyRule{{Name: "fatal", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"PodFailurePolicy"}}},
			failure{"fp-workers-0", "PodFailurePolicy", exit42}, "FailJobSetFailurePolicyAction", 0, 0, "FailJobSetFailurePolicyAction", ""},
		{"reason does not match", []jobset.FailurePolicyRule{{Name: "fatal", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"PodFailurePolicy"}}},
			failure{"fp-workers-0", "BackoffLimitExceeded", "backoff"}, "", 1, 1, "RestartJobSetFailurePolicyAction", "DefaultFailurePolicy"},
		{"reason and message match", []jobset.FailurePolicyRule{{Name: "fatal", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"PodFailurePolicy"}, OnJobFailureMessagePatterns: []string{`exit code 42\b`}}},
			failure{"fp-workers-0", "PodFailurePolicy", exit42}, "FailJobSetFailurePolicyAction", 0, 0, "FailJobSetFailurePolicyAction", ""},
		{"reason matches, message does not", []jobset.FailurePolicyRule{{Name: "fatal", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"PodFailurePolicy"}, OnJobFailureMessagePatterns: []string{`exit code 42\b`}}},
			failure{"fp-workers-0", "PodFailurePolicy", evicted}, "", 1, 1, "RestartJobSetFailurePolicyAction", "DefaultFailurePolicy"},
		{"message pattern alone", []jobset.FailurePolicyRule{{Name: "infra", Action: jobset.RestartJobSetAndIgnoreMaxRestarts, OnJobFailureMessagePatterns: []string{".*DisruptionTarget.*"}}},
			failure{"fp-workers-0", "PodFailurePolicy", evicted}, "", 1, 0, "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction", "FailurePolicy_infra"},
		{"explicit RestartJobSet", []jobset.FailurePolicyRule{{Name: "again", Action: jobset.RestartJobSet}},
			failure{"fp-leader-0", "BackoffLimitExceeded", "backoff"}, "", 1, 1, "RestartJobSetFailurePolicyAction", "FailurePolicy_again"},
		{"target replicatedJob in list", []jobset.FailurePolicyRule{{Name: "leader", Action: jobset.FailJobSet, TargetReplicatedJobs: []string{"leader"}}},
			failure{"fp-leader-0", "BackoffLimitExceeded", "backoff"}, "FailJobSetFailurePolicyAction", 0, 0, "FailJobSetFailurePolicyAction", ""},
		{"target replicatedJob not in list", []jobset.FailurePolicyRule{{Name: "leader", Action: jobset.FailJobSet, TargetReplicatedJobs: []string{"leader"}}},
			failure{"fp-workers-1", "BackoffLimitExceeded", "backoff"}, "", 1, 1, "RestartJobSetFailurePolicyAction", "DefaultFailurePolicy"},
		{"first matching rule wins", []jobset.FailurePolicyRule{
			{Name: "nomatch", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"DeadlineExceeded"}},
			{Name: "first", Action: jobset.RestartJobSetAndIgnoreMaxRestarts},
			{Name: "second", Action: jobset.FailJobSet},
		}, failure{"fp-workers-0", "BackoffLimitExceeded", "backoff"}, "", 1, 0, "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction", "FailurePolicy_first"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := plain
			ns := e.namespace(t)
			js := jstesting.MakeJobSet(ns, "fp").
				ReplicatedJob(rjob("leader", 1, 1).Obj(), rjob("workers", 2, 1).Obj()).
				FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 2, Rules: tc.rules}).
				Obj()
			e.create(t, js)
			e.waitJobs(t, js, []string{"fp-leader-0", "fp-workers-0", "fp-workers-1"}, attempt(0))
			e.markFailed(t, ns, tc.fail.job, tc.fail.reason, tc.fail.message)
			if tc.wantFailed != "" {
				got := e.waitCondition(t, js, "Failed", metav1.ConditionTrue, tc.wantFailed)
				if got.Status.Restarts != 0 {
					t.Errorf("restarts %d, want 0", got.Status.Restarts)
				}
			} else {
				e.waitJobs(t, js, []string{"fp-leader-0", "fp-workers-0", "fp-workers-1"}, attempt(1))
				got := e.waitCondition(t, js, "RestartingJobSet", metav1.ConditionTrue, tc.wantRestartBy)
				if got.Status.Restarts != tc.wantRestarts || got.Status.RestartsCountTowardsMax != tc.wantCounted {
					t.Errorf("restarts %d/%d, want %d/%d", got.Status.Restarts, got.Status.RestartsCountTowardsMax, tc.wantRestarts, tc.wantCounted)
				}
				if meta.IsStatusConditionTrue(got.Status.Conditions, "Failed") {
					t.Errorf("JobSet failed")
				}
			}
			e.waitEvent(t, js, corev1.EventTypeWarning, tc.wantEvent)
		})
	}
}

func TestRestartJobSetAndIgnoreMaxRestarts(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "ignore").
		ReplicatedJob(rjob("a", 1, 1).Obj()).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 1, Rules: []jobset.FailurePolicyRule{{
			Name: "preempted", Action: jobset.RestartJobSetAndIgnoreMaxRestarts, OnJobFailureReasons: []string{"PodFailurePolicy"},
		}}}).
		Obj()
	e.create(t, js)
	for n := range 3 {
		e.waitJobs(t, js, []string{"ignore-a-0"}, attempt(n))
		e.markFailed(t, ns, "ignore-a-0", "PodFailurePolicy", "preempted")
	}
	e.waitJobs(t, js, []string{"ignore-a-0"}, attempt(3))
	got := e.jobSet(t, js)
	if got.Status.Restarts != 3 || got.Status.RestartsCountTowardsMax != 0 {
		t.Errorf("restarts %d/%d, want 3/0", got.Status.Restarts, got.Status.RestartsCountTowardsMax)
	}
	// A failure the rule does not match uses the (unused) budget, then fails.
	e.markFailed(t, ns, "ignore-a-0", "BackoffLimitExceeded", "real bug")
	e.waitJobs(t, js, []string{"ignore-a-0"}, attempt(4))
	e.markFailed(t, ns, "ignore-a-0", "BackoffLimitExceeded", "real bug")
	got = e.waitCondition(t, js, "Failed", metav1.ConditionTrue, "ReachedMaxRestarts")
	if got.Status.Restarts != 4 || got.Status.RestartsCountTowardsMax != 1 {
		t.Errorf("restarts %d/%d, want 4/1", got.Status.Restarts, got.Status.RestartsCountTowardsMax)
	}
}

// Gated tests do not run in parallel: the gates are process-wide.
func TestRestartJobRecreatesOnlyTheFailedJob(t *testing.T) {
	features.SetForTest(t, features.RestartJob, true)
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "one").
		ReplicatedJob(rjob("a", 3, 1).Obj()).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 2, Rules: []jobset.FailurePolicyRule{{Name: "single", Action: jobset.RestartJob}}}).
		Obj()
	e.create(t, js)
	before := e.waitJobs(t, js, []string{"one-a-0", "one-a-1", "one-a-2"}, nil)
	e.markFailed(t, ns, "one-a-1", "BackoffLimitExceeded", "boom")

	var after []batchv1.Job
	testenv.Eventually(t, timeout, "one-a-1 recreated", func() error {
		after = e.jobs(t, js)
		if len(after) != 3 || after[1].UID == before[1].UID {
			return fmt.Errorf("Jobs %v", names(after))
		}
		return nil
	})
	if after[0].UID != before[0].UID || after[2].UID != before[2].UID {
		t.Errorf("Jobs that did not fail were recreated")
	}
	if after[1].Labels["jobset.sigs.k8s.io/job-restart-attempt"] != "1" || after[1].Labels[jobset.RestartsKey] != "0" {
		t.Errorf("recreated Job labels %v, want job-restart-attempt 1 and restart-attempt 0", after[1].Labels)
	}
	got := e.jobSet(t, js)
	type restarts struct {
		Restarts                   int32
		JobRestarts                [][]int32
		JobRestartsCountTowardsMax [][]int32
	}
	gotRestarts := restarts{Restarts: got.Status.Restarts}
	for _, r := range got.Status.ReplicatedJobsStatus {
		gotRestarts.JobRestarts = append(gotRestarts.JobRestarts, r.JobRestarts)
		gotRestarts.JobRestartsCountTowardsMax = append(gotRestarts.JobRestartsCountTowardsMax, r.JobRestartsCountTowardsMax)
	}
	wantRestarts := restarts{JobRestarts: [][]int32{{0, 1, 0}}, JobRestartsCountTowardsMax: [][]int32{{0, 1, 0}}}
	if d := cmp.Diff(wantRestarts, gotRestarts); d != "" {
		t.Errorf("restarts of the JobSet and of each Job (-want +got):\n%s", d)
	}
	e.waitEvent(t, js, corev1.EventTypeWarning, "RestartJobFailurePolicyAction")

	// Individual restarts count towards maxRestarts (2): one more is
	// allowed, the third failure fails the JobSet.
	e.markFailed(t, ns, "one-a-0", "BackoffLimitExceeded", "boom")
	testenv.Eventually(t, timeout, "one-a-0 recreated", func() error {
		jobs := e.jobs(t, js)
		if len(jobs) != 3 || jobs[0].UID == before[0].UID {
			return fmt.Errorf("Jobs %v", names(jobs))
		}
		return nil
	})
	e.markFailed(t, ns, "one-a-2", "BackoffLimitExceeded", "boom")
	e.waitCondition(t, js, "Failed", metav1.ConditionTrue, "ReachedMaxRestarts")
}

func TestBlockingRecreateWaitsForOldJobs(t *testing.T) {
	t.Parallel()
	for _, strategy := range []jobset.JobSetRestartStrategy{jobset.BlockingRecreate, jobset.Recreate} {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			e := plain
			ns := e.namespace(t)
			js := jstesting.MakeJobSet(ns, "block").
				ReplicatedJob(rjob("a", 2, 1).Obj()).
				FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 1, RestartStrategy: strategy}).
				Obj()
			e.create(t, js)
			e.waitJobs(t, js, []string{"block-a-0", "block-a-1"}, attempt(0))

			// Hold the deletion of block-a-1 with a finalizer of our own.
			const hold = "test.jobset.x-k8s.io/hold"
			held := &batchv1.Job{}
			if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "block-a-1"}, held); err != nil {
				t.Fatal(err)
			}
			held.Finalizers = append(held.Finalizers, hold)
			if err := e.c.Update(context.Background(), held); err != nil {
				t.Fatal(err)
			}
			e.markFailed(t, ns, "block-a-0", "BackoffLimitExceeded", "boom")

			// block-a-0 is gone and block-a-1 is stuck in deletion.
			testenv.Eventually(t, timeout, "old Jobs deleted", func() error {
				if jobs := e.jobs(t, js); len(jobs) != 0 && (strategy == jobset.BlockingRecreate || jobs[0].Labels[jobset.RestartsKey] != "1") {
					return fmt.Errorf("Jobs %v", names(jobs))
				}
				return nil
			})
			if strategy == jobset.BlockingRecreate {
				testenv.Consistently(t, 2*time.Second, "no new Job while an old one exists", func() error {
					if jobs := e.jobs(t, js); len(jobs) != 0 {
						return fmt.Errorf("created %v", names(jobs))
					}
					return nil
				})
			} else {
				e.waitJobs(t, js, []string{"block-a-0"}, attempt(1))
			}

			err := retryUpdate(e, client.ObjectKey{Namespace: ns, Name: "block-a-1"}, func(j *batchv1.Job) {
				j.Finalizers = slices.DeleteFunc(j.Finalizers, func(f string) bool { return f == hold })
			})
			if err != nil {
				t.Fatal(err)
			}
			e.waitJobs(t, js, []string{"block-a-0", "block-a-1"}, attempt(1))
		})
	}
}

func retryUpdate(e *env, key client.ObjectKey, mutate func(*batchv1.Job)) error {
	for range 10 {
		job := &batchv1.Job{}
		if err := e.c.Get(context.Background(), key, job); err != nil {
			return err
		}
		mutate(job)
		err := e.c.Update(context.Background(), job)
		if err == nil || !isConflict(err) {
			return err
		}
	}
	return fmt.Errorf("too many conflicts updating %s", key)
}

func TestSuspendAndResume(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "susp").
		ReplicatedJob(rjob("a", 2, 1).Obj()).
		Suspend(true).
		Obj()
	e.create(t, js)

	suspended := func(want bool) func(batchv1.Job) error {
		return func(j batchv1.Job) error {
			if ptr.Deref(j.Spec.Suspend, false) != want {
				return fmt.Errorf("suspend=%v, want %v", ptr.Deref(j.Spec.Suspend, false), want)
			}
			return nil
		}
	}
	e.waitJobs(t, js, []string{"susp-a-0", "susp-a-1"}, suspended(true))
	got := e.waitCondition(t, js, "Suspended", metav1.ConditionTrue, "SuspendedJobs")
	if rs := got.Status.ReplicatedJobsStatus; len(rs) != 1 || rs[0].Suspended != 2 {
		t.Errorf("replicatedJobsStatus %+v, want 2 suspended", rs)
	}
	e.waitEvent(t, js, corev1.EventTypeNormal, "SuspendedJobs")

	// While suspended, the pod template's scheduling fields change (as Kueue
	// does on admission); resuming carries them to the Jobs.
	e.updateJobSet(t, js, func(js *jobset.JobSet) {
		pod := &js.Spec.ReplicatedJobs[0].Template.Spec.Template
		pod.Labels = map[string]string{"kueue.x-k8s.io/admitted": "true"}
		pod.Annotations = map[string]string{"note": "flavor-a"}
		pod.Spec.NodeSelector = map[string]string{"pool": "gpu"}
		pod.Spec.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		pod.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/gate"}}
		js.Spec.Suspend = ptr.To(false)
	})
	jobs := e.waitJobs(t, js, []string{"susp-a-0", "susp-a-1"}, suspended(false))
	for _, j := range jobs {
		pod := j.Spec.Template
		type template struct {
			AdmittedLabel, JobSetLabel, NoteAnnotation, PoolSelector string
			Tolerations, SchedulingGates                             int
		}
		want := template{AdmittedLabel: "true", JobSetLabel: "susp", NoteAnnotation: "flavor-a", PoolSelector: "gpu", Tolerations: 1, SchedulingGates: 1}
		got := template{AdmittedLabel: pod.Labels["kueue.x-k8s.io/admitted"], JobSetLabel: pod.Labels[jobset.JobSetNameKey],
			NoteAnnotation: pod.Annotations["note"], PoolSelector: pod.Spec.NodeSelector["pool"],
			Tolerations: len(pod.Spec.Tolerations), SchedulingGates: len(pod.Spec.SchedulingGates)}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s resumed without the updated template (-want +got):\n%s", j.Name, d)
		}
	}
	e.waitCondition(t, js, "Suspended", metav1.ConditionFalse, "ResumeJobs")
	e.waitEvent(t, js, corev1.EventTypeNormal, "ResumeJobs")

	// Suspending a running JobSet suspends its Jobs.
	e.markReady(t, ns, "susp-a-0", "susp-a-1")
	e.updateJobSet(t, js, func(js *jobset.JobSet) { js.Spec.Suspend = ptr.To(true) })
	e.waitJobs(t, js, []string{"susp-a-0", "susp-a-1"}, suspended(true))
	e.waitCondition(t, js, "Suspended", metav1.ConditionTrue, "SuspendedJobs")
}

func TestInOrderStartup(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "order").
		ReplicatedJob(rjob("a", 2, 1).Obj(), rjob("b", 1, 1).Obj()).
		StartupPolicy(&jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}).
		Obj()
	e.create(t, js)
	e.waitJobs(t, js, []string{"order-a-0", "order-a-1"}, nil)
	e.waitCondition(t, js, "StartupPolicyInProgress", metav1.ConditionTrue, "InOrderStartupPolicyInProgress")

	e.markReady(t, ns, "order-a-0")
	testenv.Consistently(t, 2*time.Second, "b waits until all of a is ready", func() error {
		if got := names(e.jobs(t, js)); len(got) != 2 {
			return fmt.Errorf("Jobs %v", got)
		}
		return nil
	})
	e.markReady(t, ns, "order-a-1")
	e.waitJobs(t, js, []string{"order-a-0", "order-a-1", "order-b-0"}, nil)
	e.markReady(t, ns, "order-b-0")
	got := e.waitCondition(t, js, "StartupPolicyCompleted", metav1.ConditionTrue, "InOrderStartupPolicyCompleted")
	if meta.IsStatusConditionTrue(got.Status.Conditions, "StartupPolicyInProgress") {
		t.Errorf("StartupPolicyInProgress still true: %v", got.Status.Conditions)
	}
}

func TestInOrderStartupWithSuspend(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "osus").
		ReplicatedJob(rjob("a", 1, 1).Obj(), rjob("b", 1, 1).Obj()).
		StartupPolicy(&jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}).
		Suspend(true).
		Obj()
	e.create(t, js)
	// Suspended: every Job exists, all suspended.
	e.waitJobs(t, js, []string{"osus-a-0", "osus-b-0"}, func(j batchv1.Job) error {
		if !ptr.Deref(j.Spec.Suspend, false) {
			return fmt.Errorf("not suspended")
		}
		return nil
	})
	e.updateJobSet(t, js, func(js *jobset.JobSet) { js.Spec.Suspend = ptr.To(false) })

	// Resumed in order: a first, b only once a is ready.
	suspendedOf := func() map[string]bool {
		out := map[string]bool{}
		for _, j := range e.jobs(t, js) {
			out[j.Name] = ptr.Deref(j.Spec.Suspend, false)
		}
		return out
	}
	testenv.Eventually(t, timeout, "a resumed", func() error {
		if s := suspendedOf(); s["osus-a-0"] {
			return fmt.Errorf("suspended: %v", s)
		}
		return nil
	})
	testenv.Consistently(t, 2*time.Second, "b stays suspended until a is ready", func() error {
		if s := suspendedOf(); !s["osus-b-0"] {
			return fmt.Errorf("b resumed early: %v", s)
		}
		return nil
	})
	e.markReady(t, ns, "osus-a-0")
	testenv.Eventually(t, timeout, "b resumed", func() error {
		if s := suspendedOf(); s["osus-b-0"] {
			return fmt.Errorf("suspended: %v", s)
		}
		return nil
	})
	e.markReady(t, ns, "osus-b-0")
	e.waitCondition(t, js, "StartupPolicyCompleted", metav1.ConditionTrue, "")
}

func TestDependsOn(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	init := rjob("init", 1, 1)
	leader := rjob("leader", 1, 1).DependsOn(jobset.DependsOn{Name: "init", Status: jobset.DependencyComplete})
	workers := rjob("workers", 2, 1).DependsOn(jobset.DependsOn{Name: "leader", Status: jobset.DependencyReady})
	js := jstesting.MakeJobSet(ns, "deps").ReplicatedJob(init.Obj(), leader.Obj(), workers.Obj()).Obj()
	e.create(t, js)

	e.waitJobs(t, js, []string{"deps-init-0"}, nil)
	e.markReady(t, ns, "deps-init-0")
	testenv.Consistently(t, 2*time.Second, "leader waits for init to complete, not just be ready", func() error {
		if got := names(e.jobs(t, js)); len(got) != 1 {
			return fmt.Errorf("Jobs %v", got)
		}
		return nil
	})
	e.markSucceeded(t, ns, "deps-init-0")
	e.waitJobs(t, js, []string{"deps-init-0", "deps-leader-0"}, nil)
	testenv.Consistently(t, time.Second, "workers wait for the leader to be ready", func() error {
		if got := names(e.jobs(t, js)); len(got) != 2 {
			return fmt.Errorf("Jobs %v", got)
		}
		return nil
	})
	e.markReady(t, ns, "deps-leader-0")
	e.waitJobs(t, js, []string{"deps-init-0", "deps-leader-0", "deps-workers-0", "deps-workers-1"}, nil)
	e.markSucceeded(t, ns, "deps-leader-0", "deps-workers-0", "deps-workers-1")
	e.waitCondition(t, js, "Completed", metav1.ConditionTrue, "")
}

func TestManagedByAnotherControllerIsLeftAlone(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "other").
		ReplicatedJob(rjob("a", 2, 1).Obj()).
		ManagedBy("kueue.x-k8s.io/multikueue").
		Obj()
	e.create(t, js)
	testenv.Consistently(t, 3*time.Second, "no Jobs, Service or status", func() error {
		if jobs := e.jobs(t, js); len(jobs) != 0 {
			return fmt.Errorf("Jobs %v", names(jobs))
		}
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "other"}, &corev1.Service{}); !isNotFound(err) {
			return fmt.Errorf("Service exists (%v)", err)
		}
		got := e.jobSet(t, js)
		if len(got.Status.Conditions) != 0 || len(got.Status.ReplicatedJobsStatus) != 0 {
			return fmt.Errorf("status written: %+v", got.Status)
		}
		return nil
	})
}

func TestInvalidJobTemplateEmitsWarning(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	bad := rjob("a", 1, 1)
	bad.Template.Spec.Template.Spec.Containers[0].Name = "Not_A_DNS_Label"
	js := jstesting.MakeJobSet(ns, "invalid").ReplicatedJob(bad.Obj()).Obj()
	e.create(t, js)
	note := e.waitEvent(t, js, corev1.EventTypeWarning, "JobCreationFailed")
	// Upstream's words, and the apiserver's reason.
	if want := `job "invalid-a-0" creation failed with error: Job.batch "invalid-a-0" is invalid: `; !strings.HasPrefix(note, want) {
		t.Errorf("event note %q, want it to start with %q", note, want)
	}
	if jobs := e.jobs(t, js); len(jobs) != 0 {
		t.Errorf("Jobs %v exist", names(jobs))
	}
	// The reconcile fails and is retried; each retry repeats the same
	// event, which the events API folds into one whose series grows.
	testenv.Eventually(t, timeout, "one JobCreationFailed event with a series", func() error {
		var list eventsv1.EventList
		if err := e.c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var found []eventsv1.Event
		for _, ev := range list.Items {
			if ev.Regarding.Name == js.Name && ev.Reason == "JobCreationFailed" {
				found = append(found, ev)
			}
		}
		if len(found) != 1 {
			return fmt.Errorf("%d JobCreationFailed events, want 1", len(found))
		}
		if found[0].Series == nil || found[0].Series.Count < 2 {
			return fmt.Errorf("series %+v, want a count of at least 2", found[0].Series)
		}
		if found[0].Action != "Reconciling" || found[0].ReportingController != "jobset" {
			return fmt.Errorf("action %q reportingController %q, want Reconciling and jobset", found[0].Action, found[0].ReportingController)
		}
		return nil
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	ok := jstesting.MakeJobSet(ns, "m-ok").ReplicatedJob(rjob("a", 1, 1).Obj()).Obj()
	bad := jstesting.MakeJobSet(ns, "m-bad").ReplicatedJob(rjob("a", 1, 1).Obj()).Obj()
	e.create(t, ok)
	e.create(t, bad)
	e.waitJobs(t, ok, []string{"m-ok-a-0"}, nil)
	e.waitJobs(t, bad, []string{"m-bad-a-0"}, nil)
	e.markSucceeded(t, ns, "m-ok-a-0")
	e.markFailed(t, ns, "m-bad-a-0", "BackoffLimitExceeded", "boom")
	e.waitCondition(t, ok, "Completed", metav1.ConditionTrue, "")
	e.waitCondition(t, bad, "Failed", metav1.ConditionTrue, "")

	testenv.Eventually(t, timeout, "metrics", func() error {
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return err
		}
		counter := func(name, jobSet string) float64 {
			for _, f := range families {
				if f.GetName() != name {
					continue
				}
				for _, m := range f.GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["jobset_name"] == jobSet && labels["namespace"] == ns {
						return m.GetCounter().GetValue()
					}
				}
			}
			return 0
		}
		if got := counter("jobset_completed_total", "m-ok"); got != 1 {
			return fmt.Errorf("jobset_completed_total = %v, want 1", got)
		}
		if got := counter("jobset_failed_total", "m-bad"); got != 1 {
			return fmt.Errorf("jobset_failed_total = %v, want 1", got)
		}
		for _, f := range families {
			if f.GetName() == "jobset_reconcile_duration_seconds" {
				return nil
			}
		}
		return fmt.Errorf("no jobset_reconcile_duration_seconds histogram")
	})
}
