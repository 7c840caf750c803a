package jobset

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func conditionStatus(st jobset.JobSetStatus, typ string) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(st.Conditions, typ); c != nil {
		return c.Status
	}
	return ""
}

func TestComputePlan(t *testing.T) {
	twoRjobs := func() *jobset.JobSet {
		return testJobSet("js").ReplicatedJob(rjob("a", 2, 1).Obj(), rjob("b", 1, 1).Obj()).Obj()
	}
	tests := []struct {
		name          string
		js            func() *jobset.JobSet
		jobs          func(*jobset.JobSet) []batchv1.Job
		serviceExists bool
		check         func(*testing.T, Plan)
	}{{
		name: "new JobSet: all Jobs and the Service",
		js:   twoRjobs,
		check: func(t *testing.T, p Plan) {
			if got, want := jobNames(p.allCreates()), []string{"js-a-0", "js-a-1", "js-b-0"}; !reflect.DeepEqual(got, want) {
				t.Errorf("create %v, want %v", got, want)
			}
			if p.CreateService == nil || p.CreateService.Name != "js" {
				t.Errorf("service = %v, want js", p.CreateService)
			}
			if len(p.Status.Conditions) != 0 || len(p.Events) != 0 {
				t.Errorf("unexpected conditions %v / events %v", p.Status.Conditions, p.Events)
			}
		},
	}, {
		name:          "existing Jobs are not recreated; Service exists",
		js:            twoRjobs,
		jobs:          func(js *jobset.JobSet) []batchv1.Job { return []batchv1.Job{childJob(js, 0, 1)} },
		serviceExists: true,
		check: func(t *testing.T, p Plan) {
			if got, want := jobNames(p.allCreates()), []string{"js-a-0", "js-b-0"}; !reflect.DeepEqual(got, want) {
				t.Errorf("create %v, want %v", got, want)
			}
			if p.CreateService != nil {
				t.Errorf("service recreated")
			}
		},
	}, {
		name: "DNS disabled: no Service",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.Network = &jobset.Network{EnableDNSHostnames: ptr.To(false)}
			return js
		},
		check: func(t *testing.T, p Plan) {
			if p.CreateService != nil {
				t.Errorf("service planned with DNS hostnames disabled")
			}
		},
	}, {
		name: "suspended: Jobs created suspended, running ones suspended",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.Suspend = ptr.To(true)
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job {
			return []batchv1.Job{childJob(js, 0, 0, func(j *batchv1.Job) { j.Spec.Suspend = ptr.To(false) })}
		},
		check: func(t *testing.T, p Plan) {
			for _, j := range p.allCreates() {
				if !ptr.Deref(j.Spec.Suspend, false) {
					t.Errorf("%s created unsuspended", j.Name)
				}
			}
			if got := jobNames(p.SuspendJobs); !reflect.DeepEqual(got, []string{"js-a-0"}) {
				t.Errorf("suspend %v, want js-a-0", got)
			}
			if conditionStatus(p.Status, "Suspended") != metav1.ConditionTrue || len(p.Events) != 1 || p.Events[0].reason != ReasonSuspended {
				t.Errorf("want Suspended=True with one event, got %v %v", p.Status.Conditions, p.Events)
			}
		},
	}, {
		name: "resume: template changes applied, condition flipped",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "x"}
			js.Status.Conditions = []metav1.Condition{{Type: "Suspended", Status: "True", Reason: ReasonSuspended}}
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job { return allChildJobs(js, suspendedJob) },
		check: func(t *testing.T, p Plan) {
			if len(p.ResumeJobs) != 3 {
				t.Fatalf("resume %d Jobs, want 3", len(p.ResumeJobs))
			}
			for _, r := range p.ResumeJobs {
				if r.job.Labels[jobset.ReplicatedJobNameKey] == "a" && r.template.Spec.NodeSelector["pool"] != "x" {
					t.Errorf("%s resumed without the new nodeSelector", r.job.Name)
				}
			}
			if conditionStatus(p.Status, "Suspended") != metav1.ConditionFalse || len(p.Events) != 1 || p.Events[0].reason != ReasonResumed {
				t.Errorf("want Suspended=False with one event, got %v %v", p.Status.Conditions, p.Events)
			}
		},
	}, {
		name: "in order: only the first replicatedJob until it is ready",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.StartupPolicy = &jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}
			return js
		},
		check: func(t *testing.T, p Plan) {
			if got := jobNames(p.allCreates()); !reflect.DeepEqual(got, []string{"js-a-0", "js-a-1"}) {
				t.Errorf("create %v, want only a's Jobs", got)
			}
			if conditionStatus(p.Status, "StartupPolicyInProgress") != metav1.ConditionTrue {
				t.Errorf("want StartupPolicyInProgress=True, got %v", p.Status.Conditions)
			}
		},
	}, {
		// Upstream's InOrder startup goes back to "in progress" whenever a
		// started replicatedJob stops being ready.
		name: "in order: back in progress when a started replicatedJob is not ready",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.StartupPolicy = &jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}
			js.Status.Conditions = []metav1.Condition{{Type: "StartupPolicyCompleted", Status: "True", Reason: ReasonInOrderCompleted}}
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job {
			jobs := allChildJobs(js, ready)
			jobs[0].Status.Ready = ptr.To[int32](0) // a pod of a stops being ready
			return jobs
		},
		check: func(t *testing.T, p Plan) {
			if conditionStatus(p.Status, "StartupPolicyCompleted") != metav1.ConditionFalse || conditionStatus(p.Status, "StartupPolicyInProgress") != metav1.ConditionTrue {
				t.Errorf("startup conditions: %v, want InProgress True and Completed False", p.Status.Conditions)
			}
		},
	}, {
		name: "blocking recreate waits for the previous attempt",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 2, RestartStrategy: jobset.BlockingRecreate}
			js.Status.Restarts = 1
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job {
			return []batchv1.Job{childJob(js, 1, 0, withLabel(jobset.RestartsKey, "0"))}
		},
		check: func(t *testing.T, p Plan) {
			if len(p.allCreates()) != 0 {
				t.Errorf("created %v while a previous Job exists", jobNames(p.allCreates()))
			}
			if got := jobNames(p.DeleteJobs); !reflect.DeepEqual(got, []string{"js-b-0"}) {
				t.Errorf("delete %v, want js-b-0", got)
			}
		},
	}, {
		name: "recreate replaces what is gone and waits for the rest",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 2}
			js.Status.Restarts = 1
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job {
			return []batchv1.Job{childJob(js, 1, 0, withLabel(jobset.RestartsKey, "0"), func(j *batchv1.Job) {
				j.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
			})}
		},
		check: func(t *testing.T, p Plan) {
			if got := jobNames(p.allCreates()); !reflect.DeepEqual(got, []string{"js-a-0", "js-a-1"}) {
				t.Errorf("create %v, want a's Jobs only", got)
			}
			for _, j := range p.allCreates() {
				if j.Labels[jobset.RestartsKey] != "1" {
					t.Errorf("%s restart-attempt = %s, want 1", j.Name, j.Labels[jobset.RestartsKey])
				}
			}
			if len(p.DeleteJobs) != 0 {
				t.Errorf("Job already being deleted deleted again")
			}
		},
	}, {
		name: "all succeeded: completed",
		js:   twoRjobs,
		jobs: func(js *jobset.JobSet) []batchv1.Job { return allChildJobs(js, completed) },
		check: func(t *testing.T, p Plan) {
			type outcome struct {
				Completed            metav1.ConditionStatus
				TerminalState        string
				Finished             jobset.JobSetConditionType
				EventTypesAndReasons []string
			}
			got := outcome{Completed: conditionStatus(p.Status, "Completed"), TerminalState: p.Status.TerminalState, Finished: p.Finished}
			for _, e := range p.Events {
				got.EventTypesAndReasons = append(got.EventTypesAndReasons, e.eventType+" "+e.reason)
			}
			want := outcome{Completed: metav1.ConditionTrue, TerminalState: "Completed", Finished: jobset.JobSetCompleted,
				EventTypesAndReasons: []string{corev1.EventTypeNormal + " " + ReasonAllJobsCompleted}}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("not completed (-want +got):\n%s", d)
			}
		},
	}, {
		name: "finished: active Jobs deleted, TTL requeue",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Spec.TTLSecondsAfterFinished = ptr.To[int32](30)
			js.Status.Conditions = []metav1.Condition{{Type: "Completed", Status: "True", LastTransitionTime: metav1.NewTime(t0.Add(-10 * time.Second))}}
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job {
			return []batchv1.Job{childJob(js, 0, 0, completed), childJob(js, 0, 1, ready)}
		},
		check: func(t *testing.T, p Plan) {
			if got := jobNames(p.DeleteJobs); !reflect.DeepEqual(got, []string{"js-a-1"}) {
				t.Errorf("delete %v, want the active js-a-1", got)
			}
			if p.DeleteJobSet || p.RequeueAfter != 20*time.Second {
				t.Errorf("deleteJobSet %v requeueAfter %v, want false 20s", p.DeleteJobSet, p.RequeueAfter)
			}
			if len(p.allCreates()) != 0 || p.CreateService != nil {
				t.Errorf("finished JobSet must not create anything")
			}
		},
	}, {
		name: "restarting cleared once all Jobs are ready",
		js: func() *jobset.JobSet {
			js := twoRjobs()
			js.Status.Restarts = 1
			js.Status.Conditions = []metav1.Condition{{Type: string(jobset.JobSetRestarting), Status: "True", Reason: ReasonRestartingDefaultPolicy}}
			return js
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job {
			js = js.DeepCopy()
			js.Status.Restarts = 1
			return allChildJobs(js, ready)
		},
		serviceExists: true,
		check: func(t *testing.T, p Plan) {
			c := meta.FindStatusCondition(p.Status.Conditions, string(jobset.JobSetRestarting))
			want := &metav1.Condition{Type: string(jobset.JobSetRestarting), Status: metav1.ConditionFalse, Reason: ReasonRestartingJobsReady}
			if d := cmp.Diff(want, c, cmpopts.IgnoreFields(metav1.Condition{}, "Message", "ObservedGeneration", "LastTransitionTime")); d != "" {
				t.Errorf("RestartingJobSet (-want +got):\n%s", d)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := tc.js()
			var jobs []batchv1.Job
			if tc.jobs != nil {
				jobs = tc.jobs(js)
			}
			before := js.DeepCopy()
			p := ComputePlan(js, Observed{Jobs: jobs, ServiceExists: tc.serviceExists}, t0)
			if !reflect.DeepEqual(before, js) {
				t.Errorf("computePlan mutated its input")
			}
			tc.check(t, p)
		})
	}
}

func TestComputePlanIsStable(t *testing.T) {
	// Reconciling again with the status the first pass produced and nothing
	// else changed must plan no further status change.
	js := testJobSet("js").ReplicatedJob(rjob("a", 2, 1).Obj()).
		StartupPolicy(&jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}).
		Obj()
	jobs := allChildJobs(js, ready)
	p := ComputePlan(js, Observed{Jobs: jobs, ServiceExists: true}, t0)
	js.Status = p.Status
	again := ComputePlan(js, Observed{Jobs: jobs, ServiceExists: true}, t0.Add(time.Minute))
	if d := cmp.Diff(p.Status, again.Status); d != "" {
		t.Errorf("second pass changed the status (-first +second):\n%s", d)
	}
	if len(again.Events) != 0 {
		t.Errorf("second pass emitted events %v", again.Events)
	}
}

// The events (and so the condition reasons and messages) of each
// transition, word for word as upstream emits them, in its order.
func TestTransitionEvents(t *testing.T) {
	restarting := metav1.Condition{Type: "RestartingJobSet", Status: "True", Reason: ReasonRestartingDefaultPolicy}
	tests := []struct {
		name   string
		mutate func(js *jobset.JobSet)
		jobs   func(js *jobset.JobSet) []batchv1.Job
		want   []event
	}{{
		name: "completed while restarting",
		mutate: func(js *jobset.JobSet) {
			js.Status.Conditions = []metav1.Condition{restarting}
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job { return allChildJobs(js, completed) },
		// Succeeded Jobs count as ready first, as upstream counts them.
		want: []event{
			{"Normal", "JobsReady", "all jobs are ready"},
			{"Normal", "AllJobsCompleted", "jobset completed successfully"},
			{"Normal", "JobSetCompleted", "jobset completed successfully"},
		},
	}, {
		name: "suspended while restarting",
		mutate: func(js *jobset.JobSet) {
			js.Spec.Suspend = ptr.To(true)
			js.Status.Conditions = []metav1.Condition{restarting}
		},
		want: []event{
			{"Normal", "SuspendedJobs", "jobset is suspended"},
			{"Normal", "JobSetSuspended", "jobset is suspended"},
		},
	}, {
		name: "resumed",
		mutate: func(js *jobset.JobSet) {
			js.Status.Conditions = []metav1.Condition{{Type: "Suspended", Status: "True", Reason: ReasonSuspended, Message: MessageSuspended}}
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job { return allChildJobs(js, suspendedJob) },
		want: []event{{"Normal", "ResumeJobs", "jobset is resumed"}},
	}, {
		name: "restarted Jobs all ready",
		mutate: func(js *jobset.JobSet) {
			js.Status.Conditions = []metav1.Condition{restarting}
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job { return allChildJobs(js, ready) },
		want: []event{{"Normal", "JobsReady", "all jobs are ready"}},
	}, {
		name: "in order startup",
		mutate: func(js *jobset.JobSet) {
			js.Spec.StartupPolicy = &jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}
		},
		want: []event{{"Normal", "InOrderStartupPolicyInProgress", "in order startup policy is in progress"}},
	}, {
		name: "in order startup done",
		mutate: func(js *jobset.JobSet) {
			js.Spec.StartupPolicy = &jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}
			js.Status.Conditions = []metav1.Condition{{Type: "StartupPolicyInProgress", Status: "True", Reason: ReasonInOrderInProgress, Message: MessageInOrderInProgress}}
		},
		jobs: func(js *jobset.JobSet) []batchv1.Job { return allChildJobs(js, ready) },
		want: []event{{"Normal", "InOrderStartupPolicyCompleted", "in order startup policy has completed"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := testJobSet("js").ReplicatedJob(rjob("a", 1, 1).Obj(), rjob("b", 1, 1).Obj()).Obj()
			tc.mutate(js)
			var jobs []batchv1.Job
			if tc.jobs != nil {
				jobs = tc.jobs(js)
			}
			p := ComputePlan(js, Observed{Jobs: jobs, ServiceExists: true}, t0)
			if d := cmp.Diff(tc.want, p.Events, cmp.AllowUnexported(event{})); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
}
