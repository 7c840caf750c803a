package jobset_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

const (
	timeout   = 30 * time.Second
	gcTimeout = 90 * time.Second
)

// namespace creates a fresh namespace for one test.
func (e *env) namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "js-"}}
	if err := e.c.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// rjob is a replicatedJob whose Jobs run parallelism pods, failing at the
// first pod failure.
func rjob(name string, replicas, parallelism int32) *jstesting.ReplicatedJobWrapper {
	return jstesting.MakeReplicatedJob(name).Replicas(replicas).
		Parallelism(parallelism).Completions(parallelism).BackoffLimit(0).
		RestartPolicy(corev1.RestartPolicyNever).Container("main", "busybox")
}

func (e *env) create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := e.c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (e *env) jobSet(t *testing.T, js *jobset.JobSet) *jobset.JobSet {
	t.Helper()
	got := &jobset.JobSet{}
	if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(js), got); err != nil {
		t.Fatalf("getting JobSet %s: %v", js.Name, err)
	}
	return got
}

// updateJobSet applies mutate to the latest JobSet, retrying conflicts.
func (e *env) updateJobSet(t *testing.T, js *jobset.JobSet, mutate func(*jobset.JobSet)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &jobset.JobSet{}
		if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(js), got); err != nil {
			return err
		}
		mutate(got)
		return e.c.Update(context.Background(), got)
	})
	if err != nil {
		t.Fatalf("updating JobSet %s: %v", js.Name, err)
	}
}

// jobs lists the JobSet's Jobs that are not being deleted, sorted by name.
func (e *env) jobs(t *testing.T, js *jobset.JobSet) []batchv1.Job {
	t.Helper()
	var list batchv1.JobList
	if err := e.c.List(context.Background(), &list, client.InNamespace(js.Namespace),
		client.MatchingLabels{jobset.JobSetNameKey: js.Name}); err != nil {
		t.Fatalf("listing Jobs: %v", err)
	}
	jobs := slices.DeleteFunc(list.Items, func(j batchv1.Job) bool { return j.DeletionTimestamp != nil })
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Name < jobs[j].Name })
	return jobs
}

func names(jobs []batchv1.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.Name)
	}
	return out
}

// waitJobs waits until the JobSet has exactly the named Jobs, each
// satisfying ok (when given), and returns them.
func (e *env) waitJobs(t *testing.T, js *jobset.JobSet, want []string, ok func(batchv1.Job) error) []batchv1.Job {
	t.Helper()
	var jobs []batchv1.Job
	testenv.Eventually(t, timeout, fmt.Sprintf("Jobs %v", want), func() error {
		jobs = e.jobs(t, js)
		if got := names(jobs); !slices.Equal(got, want) {
			return fmt.Errorf("Jobs are %v", got)
		}
		for _, j := range jobs {
			if ok != nil {
				if err := ok(j); err != nil {
					return fmt.Errorf("%s: %w", j.Name, err)
				}
			}
		}
		return nil
	})
	return jobs
}

func attempt(n int) func(batchv1.Job) error {
	return func(j batchv1.Job) error {
		if got := j.Labels[jobset.RestartsKey]; got != fmt.Sprint(n) {
			return fmt.Errorf("restart-attempt %s, want %d", got, n)
		}
		return nil
	}
}

// updateJobStatus plays the Job controller: it sets the status of the named
// Job, retrying conflicts with the reconciler's own writes.
func (e *env) updateJobStatus(t *testing.T, ns, name string, mutate func(*batchv1.Job)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		job := &batchv1.Job{}
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, job); err != nil {
			return err
		}
		mutate(job)
		return e.c.Status().Update(context.Background(), job)
	})
	if err != nil {
		t.Fatalf("updating status of Job %s: %v", name, err)
	}
}

func (e *env) markReady(t *testing.T, ns string, jobNames ...string) {
	t.Helper()
	for _, name := range jobNames {
		e.updateJobStatus(t, ns, name, func(j *batchv1.Job) {
			n := ptr.Deref(j.Spec.Parallelism, 1)
			j.Status.Active = n
			j.Status.Ready = ptr.To(n)
		})
	}
}

func (e *env) markSucceeded(t *testing.T, ns string, jobNames ...string) {
	t.Helper()
	for _, name := range jobNames {
		e.updateJobStatus(t, ns, name, func(j *batchv1.Job) {
			now := metav1.Now()
			if j.Status.StartTime == nil {
				j.Status.StartTime = &now
			}
			j.Status.CompletionTime = &now
			j.Status.Active, j.Status.Ready = 0, ptr.To[int32](0)
			j.Status.Succeeded = ptr.Deref(j.Spec.Completions, 1)
			j.Status.Conditions = append(j.Status.Conditions,
				batchv1.JobCondition{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
				batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now})
		})
	}
}

func (e *env) markFailed(t *testing.T, ns, name, reason, message string) {
	t.Helper()
	e.updateJobStatus(t, ns, name, func(j *batchv1.Job) {
		now := metav1.Now()
		if j.Status.StartTime == nil {
			j.Status.StartTime = &now
		}
		j.Status.Active, j.Status.Ready = 0, ptr.To[int32](0)
		j.Status.Failed = 1
		j.Status.Conditions = append(j.Status.Conditions,
			batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now},
			batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now})
	})
}

// waitCondition waits for a JobSet condition with the given status (and
// reason, when not empty) and returns the JobSet.
func (e *env) waitCondition(t *testing.T, js *jobset.JobSet, typ string, status metav1.ConditionStatus, reason string) *jobset.JobSet {
	t.Helper()
	var got *jobset.JobSet
	testenv.Eventually(t, timeout, fmt.Sprintf("condition %s=%s %s", typ, status, reason), func() error {
		got = e.jobSet(t, js)
		c := meta.FindStatusCondition(got.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("no %s condition in %v", typ, got.Status.Conditions)
		}
		if c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("%s is %s (%s: %s)", typ, c.Status, c.Reason, c.Message)
		}
		return nil
	})
	return got
}

// notFinished fails if the JobSet completed or failed.
func notFinished(t *testing.T, e *env, js *jobset.JobSet) func() error {
	return func() error {
		got := e.jobSet(t, js)
		for _, typ := range []string{"Completed", "Failed"} {
			if meta.IsStatusConditionTrue(got.Status.Conditions, typ) {
				return fmt.Errorf("JobSet is %s: %v", typ, got.Status.Conditions)
			}
		}
		return nil
	}
}

// waitEvent waits for an event about the JobSet with the given type and
// reason and returns its note.
func (e *env) waitEvent(t *testing.T, js *jobset.JobSet, eventType, reason string) string {
	t.Helper()
	var note string
	testenv.Eventually(t, timeout, fmt.Sprintf("%s event %s", eventType, reason), func() error {
		var list eventsv1.EventList
		if err := e.c.List(context.Background(), &list, client.InNamespace(js.Namespace)); err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "JobSet" && ev.Regarding.Name == js.Name {
				if ev.Type == eventType && ev.Reason == reason {
					note = ev.Note
					return nil
				}
				seen = append(seen, ev.Type+"/"+ev.Reason)
			}
		}
		return fmt.Errorf("events seen: %s", strings.Join(seen, ", "))
	})
	return note
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func isConflict(err error) bool { return apierrors.IsConflict(err) }

func containsText(s, sub string) bool { return strings.Contains(s, sub) }
