package jobset

import (
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
)

// Builders shared by the unit tests (pure, no apiserver).

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testJobSet starts a JobSet as the apiserver would hold it before
// defaulting: in namespace ns, with a UID derived from its name.
func testJobSet(name string) *jstesting.JobSetWrapper {
	return jstesting.MakeJobSet("ns", name).UID(types.UID(name + "-uid"))
}

// rjob is a replicatedJob of replicas Jobs of pods pods each.
func rjob(name string, replicas, pods int32) *jstesting.ReplicatedJobWrapper {
	return jstesting.MakeReplicatedJob(name).Replicas(replicas).Parallelism(pods).Completions(pods).Container("c", "busybox")
}

func defaulted(js *jobset.JobSet) *jobset.JobSet {
	out := js.DeepCopy()
	jobset.Default(out)
	return out
}

// childJob builds the Job the controller would create, as a value, with the
// given status applied.
func childJob(js *jobset.JobSet, rjobIdx, idx int, mutate ...func(*batchv1.Job)) batchv1.Job {
	job := buildJob(defaulted(js), rjobIdx, idx)
	for _, m := range mutate {
		m(job)
	}
	return *job
}

func allChildJobs(js *jobset.JobSet, mutate ...func(*batchv1.Job)) []batchv1.Job {
	var jobs []batchv1.Job
	for i, r := range js.Spec.ReplicatedJobs {
		for idx := range int(r.Replicas) {
			jobs = append(jobs, childJob(js, i, idx, mutate...))
		}
	}
	return jobs
}

func completed(job *batchv1.Job) {
	job.Status.Succeeded = ptr.Deref(job.Spec.Completions, 1)
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue})
}

func failedAt(at time.Time, reason, message string) func(*batchv1.Job) {
	return func(job *batchv1.Job) {
		job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{
			Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message,
			LastTransitionTime: metav1.NewTime(at),
		})
	}
}

func ready(job *batchv1.Job) {
	n := ptr.Deref(job.Spec.Parallelism, 1)
	job.Status.Active = n
	job.Status.Ready = ptr.To(n)
}

func withLabel(key, value string) func(*batchv1.Job) {
	return func(job *batchv1.Job) { job.Labels[key] = value }
}

func suspendedJob(job *batchv1.Job) { job.Spec.Suspend = ptr.To(true) }

func jobNames(jobs []*batchv1.Job) []string {
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	return names
}

func ptrs(jobs []batchv1.Job) []*batchv1.Job {
	out := make([]*batchv1.Job, len(jobs))
	for i := range jobs {
		out[i] = &jobs[i]
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
