package jobset

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/featuregate"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func TestClassify(t *testing.T) {
	// Individual restart attempts matter only with the RestartJob gate.
	features.SetForTest(t, features.RestartJob, true)
	js := testJobSet("js").ReplicatedJob(rjob("a", 2, 1).Obj()).Obj()
	js.Status.Restarts = 1
	js.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "a", JobRestarts: []int32{0, 2}}}
	current := func(j *batchv1.Job) {
		j.Labels[jobset.RestartsKey] = "1"
		j.Labels[JobRestartAttemptKey] = "0"
	}
	jobs := []batchv1.Job{
		childJob(js, 0, 0, withLabel(jobset.RestartsKey, "0")),                       // earlier JobSet attempt
		childJob(js, 0, 0, current),                                                  // active
		childJob(js, 0, 1, current),                                                  // individual attempt 0 < 2
		childJob(js, 0, 1, current, withLabel(JobRestartAttemptKey, "2"), completed), // succeeded
		childJob(js, 0, 1, current, withLabel(JobRestartAttemptKey, "2"), failedAt(t0, "", "")),
		childJob(js, 0, 1, current, withLabel(jobset.JobIndexKey, "5")),           // beyond replicas
		childJob(js, 0, 1, current, withLabel(jobset.ReplicatedJobNameKey, "zz")), // unknown replicatedJob
		childJob(js, 0, 1, withLabel(jobset.RestartsKey, "garbage")),
	}
	for i := range jobs {
		jobs[i].Name = jobs[i].Name + "-" + itoa(i)
	}
	kids := classify(defaulted(js), jobs)
	for name, tc := range map[string]struct {
		got  []*batchv1.Job
		want []int
	}{
		"previous":  {kids.previous, []int{0, 2, 5, 6, 7}},
		"active":    {kids.active, []int{1}},
		"succeeded": {kids.succeeded, []int{3}},
		"failed":    {kids.failed, []int{4}},
	} {
		var want []string
		for _, i := range tc.want {
			want = append(want, jobs[i].Name)
		}
		if got := jobNames(tc.got); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if len(kids.names) != len(jobs) {
		t.Errorf("names has %d entries, want %d", len(kids.names), len(jobs))
	}
}

func TestReplicatedJobStatuses(t *testing.T) {
	js := testJobSet("js").ReplicatedJob(rjob("a", 4, 2).Obj(), rjob("b", 1, 1).Obj()).Obj()
	js.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "a", Ready: 9, JobRestarts: []int32{1, 0, 0, 0}, JobRestartsCountTowardsMax: []int32{1, 0, 0, 0}}}
	halfReady := func(j *batchv1.Job) { j.Status.Active = 2; j.Status.Ready = ptr.To[int32](1) }
	readyBySucceeded := func(j *batchv1.Job) { j.Status.Active = 1; j.Status.Ready = ptr.To[int32](1); j.Status.Succeeded = 1 }
	jobs := []batchv1.Job{
		childJob(js, 0, 0, ready),
		childJob(js, 0, 1, halfReady, suspendedJob),
		childJob(js, 0, 2, readyBySucceeded),
		childJob(js, 0, 3, completed),
		childJob(js, 1, 0, failedAt(t0, "", "")),
	}
	// Upstream's order (descending names); per-Job restart counters are
	// dropped without the RestartJob gate.
	got := replicatedJobStatuses(defaulted(js), classify(defaulted(js), jobs))
	want := []jobset.ReplicatedJobStatus{
		{Name: "b", Failed: 1},
		{Name: "a", Ready: 2, Succeeded: 1, Active: 3, Suspended: 1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("statuses (-want +got):\n%s", d)
	}

	features.SetForTest(t, features.RestartJob, true)
	got = replicatedJobStatuses(defaulted(js), classify(defaulted(js), jobs))
	want[1].JobRestarts, want[1].JobRestartsCountTowardsMax = []int32{1, 0, 0, 0}, []int32{1, 0, 0, 0}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("statuses with the RestartJob gate (-want +got):\n%s", d)
	}
}

func TestSetCondition(t *testing.T) {
	now := metav1.NewTime(t0)
	cond := func(typ jobset.JobSetConditionType, status metav1.ConditionStatus) metav1.Condition {
		return metav1.Condition{Type: string(typ), Status: status, Reason: "R", Message: "m"}
	}
	tests := []struct {
		name        string
		existing    []metav1.Condition
		set         metav1.Condition
		wantFlipped bool
		want        map[string]metav1.ConditionStatus
	}{
		{"add true", nil, cond(jobset.JobSetSuspended, metav1.ConditionTrue), true, map[string]metav1.ConditionStatus{"Suspended": "True"}},
		{"never add false", nil, cond(jobset.JobSetSuspended, metav1.ConditionFalse), false, map[string]metav1.ConditionStatus{}},
		{"flip to false", []metav1.Condition{cond(jobset.JobSetSuspended, metav1.ConditionTrue)}, cond(jobset.JobSetSuspended, metav1.ConditionFalse), true, map[string]metav1.ConditionStatus{"Suspended": "False"}},
		{"same status", []metav1.Condition{cond(jobset.JobSetSuspended, metav1.ConditionTrue)}, cond(jobset.JobSetSuspended, metav1.ConditionTrue), false, map[string]metav1.ConditionStatus{"Suspended": "True"}},
		{"same status, new message", []metav1.Condition{cond(jobset.JobSetSuspended, metav1.ConditionTrue)},
			metav1.Condition{Type: "Suspended", Status: metav1.ConditionTrue, Reason: "R", Message: "other"}, true, map[string]metav1.ConditionStatus{"Suspended": "True"}},
		{"startup completed clears in progress",
			[]metav1.Condition{cond(jobset.JobSetStartupPolicyInProgress, metav1.ConditionTrue)},
			cond(jobset.JobSetStartupPolicyCompleted, metav1.ConditionTrue), true,
			map[string]metav1.ConditionStatus{"StartupPolicyInProgress": "False", "StartupPolicyCompleted": "True"}},
		{"startup in progress clears completed",
			[]metav1.Condition{cond(jobset.JobSetStartupPolicyCompleted, metav1.ConditionTrue)},
			cond(jobset.JobSetStartupPolicyInProgress, metav1.ConditionTrue), true,
			map[string]metav1.ConditionStatus{"StartupPolicyInProgress": "True", "StartupPolicyCompleted": "False"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := jobset.JobSetStatus{Conditions: slices.Clone(tc.existing)}
			if got := setCondition(&st, tc.set, now); got != tc.wantFlipped {
				t.Errorf("flipped = %v, want %v", got, tc.wantFlipped)
			}
			got := map[string]metav1.ConditionStatus{}
			for _, c := range st.Conditions {
				got[c.Type] = c.Status
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("conditions = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecideFailure(t *testing.T) {
	js := testJobSet("js").ReplicatedJob(rjob("leader", 1, 1).Obj(), rjob("workers", 2, 1).Obj()).Obj()
	leader := childJob(js, 0, 0, failedAt(t0.Add(2*time.Second), "PodFailurePolicy", "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"))
	worker0 := childJob(js, 1, 0, failedAt(t0.Add(time.Second), "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
	worker1 := childJob(js, 1, 1, failedAt(t0, "DeadlineExceeded", "Job was active longer than specified deadline"))

	rule := func(name string, action jobset.FailurePolicyAction, mutate func(*jobset.FailurePolicyRule)) jobset.FailurePolicyRule {
		r := jobset.FailurePolicyRule{Name: name, Action: action}
		if mutate != nil {
			mutate(&r)
		}
		return r
	}
	tests := []struct {
		name       string
		policy     *jobset.FailurePolicy
		failed     []batchv1.Job
		wantAction jobset.FailurePolicyAction
		wantRule   string
		wantJob    string
	}{
		{"no failure policy fails on the first failure", nil, []batchv1.Job{leader, worker0}, jobset.FailJobSet, "", "js-workers-0"},
		{"no rules restart the JobSet", &jobset.FailurePolicy{MaxRestarts: 1}, []batchv1.Job{leader, worker0}, jobset.RestartJobSet, "", "js-workers-0"},
		{"reason matches", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) { r.OnJobFailureReasons = []string{"PodFailurePolicy"} }),
		}}, []batchv1.Job{leader, worker0}, jobset.FailJobSet, "r", "js-leader-0"},
		{"reason does not match", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) { r.OnJobFailureReasons = []string{"PodFailurePolicy"} }),
		}}, []batchv1.Job{worker0}, jobset.RestartJobSet, "", "js-workers-0"},
		{"message pattern matches", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) { r.OnJobFailureMessagePatterns = []string{"nope", "exit code 42"} }),
		}}, []batchv1.Job{leader, worker0}, jobset.FailJobSet, "r", "js-leader-0"},
		{"reason matches but message does not", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) {
				r.OnJobFailureReasons = []string{"PodFailurePolicy"}
				r.OnJobFailureMessagePatterns = []string{"exit code 1 "}
			}),
		}}, []batchv1.Job{leader}, jobset.RestartJobSet, "", "js-leader-0"},
		{"invalid pattern matches nothing", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) { r.OnJobFailureMessagePatterns = []string{"("} }),
		}}, []batchv1.Job{leader}, jobset.RestartJobSet, "", "js-leader-0"},
		{"target replicatedJob in list", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.RestartJobSetAndIgnoreMaxRestarts, func(r *jobset.FailurePolicyRule) { r.TargetReplicatedJobs = []string{"leader"} }),
		}}, []batchv1.Job{worker0, leader}, jobset.RestartJobSetAndIgnoreMaxRestarts, "r", "js-leader-0"},
		{"target replicatedJob not in list", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("r", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) { r.TargetReplicatedJobs = []string{"leader"} }),
		}}, []batchv1.Job{worker0}, jobset.RestartJobSet, "", "js-workers-0"},
		{"first matching rule wins", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("never", jobset.FailJobSet, func(r *jobset.FailurePolicyRule) { r.OnJobFailureReasons = []string{"Other"} }),
			rule("first", jobset.RestartJob, nil),
			rule("second", jobset.FailJobSet, nil),
		}}, []batchv1.Job{leader, worker0, worker1}, jobset.RestartJob, "first", "js-workers-1"},
		{"earliest failure among the rule's matches", &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			rule("w", jobset.RestartJob, func(r *jobset.FailurePolicyRule) { r.TargetReplicatedJobs = []string{"workers"} }),
		}}, []batchv1.Job{worker0, leader, worker1}, jobset.RestartJob, "w", "js-workers-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := js.DeepCopy()
			js.Spec.FailurePolicy = tc.policy
			d := decideFailure(defaulted(js), ptrs(tc.failed))
			gotRule := ""
			if d.rule != nil {
				gotRule = d.rule.Name
			}
			if d.action != tc.wantAction || gotRule != tc.wantRule || d.job.Name != tc.wantJob {
				t.Errorf("decision = %s rule %q job %s, want %s rule %q job %s", d.action, gotRule, d.job.Name, tc.wantAction, tc.wantRule, tc.wantJob)
			}
		})
	}
}

// TestFailurePolicyOutcome covers the status a failure leads to, and the
// events announcing it, in upstream's order.
func TestFailurePolicyOutcome(t *testing.T) {
	type want struct {
		failedReason       string // "" when not failed
		restarts, counted  int32
		jobRestarts        []int32
		jobRestartsCounted []int32
		restartingReason   string
		events             []event
		err                string
	}
	const first = " (first failed job: js-w-1)"
	restartJob := map[featuregate.Feature]bool{features.RestartJob: true}
	tests := []struct {
		name   string
		gates  map[featuregate.Feature]bool
		policy *jobset.FailurePolicy
		status jobset.JobSetStatus
		want   want
	}{
		{name: "no policy", want: want{failedReason: ReasonFailedJobs,
			events: []event{{"Warning", ReasonFailedJobs, MessageFailedJobs + first}}}},
		{name: "maxRestarts 0", policy: &jobset.FailurePolicy{}, want: want{failedReason: ReasonReachedMaxRestarts,
			events: []event{{"Warning", ReasonReachedMaxRestarts, MessageReachedMaxRestarts + first}}}},
		{name: "restart within budget", policy: &jobset.FailurePolicy{MaxRestarts: 2}, status: jobset.JobSetStatus{Restarts: 1, RestartsCountTowardsMax: 1},
			want: want{restarts: 2, counted: 2, restartingReason: ReasonRestartingDefaultPolicy, events: []event{
				{"Warning", ReasonRestartingDefaultPolicy, MessageRestartJobSetAction + first},
				{"Warning", ReasonRestartJobSetAction, MessageRestartJobSetAction + first},
			}}},
		{name: "budget used", policy: &jobset.FailurePolicy{MaxRestarts: 2}, status: jobset.JobSetStatus{Restarts: 5, RestartsCountTowardsMax: 2},
			want: want{failedReason: ReasonReachedMaxRestarts, restarts: 5, counted: 2,
				events: []event{{"Warning", ReasonReachedMaxRestarts, MessageReachedMaxRestarts + first}}}},
		{name: "individual restarts count towards the budget", gates: restartJob, policy: &jobset.FailurePolicy{MaxRestarts: 2},
			status: jobset.JobSetStatus{RestartsCountTowardsMax: 1, ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w", JobRestarts: []int32{1, 0}, JobRestartsCountTowardsMax: []int32{1, 0}}}},
			want: want{failedReason: ReasonReachedMaxRestarts, counted: 1, jobRestarts: []int32{1, 0}, jobRestartsCounted: []int32{1, 0},
				events: []event{{"Warning", ReasonReachedMaxRestarts, MessageReachedMaxRestarts + first}}}},
		{name: "ignore max restarts", policy: &jobset.FailurePolicy{MaxRestarts: 1, Rules: []jobset.FailurePolicyRule{{Name: "infra", Action: jobset.RestartJobSetAndIgnoreMaxRestarts}}},
			status: jobset.JobSetStatus{Restarts: 3, RestartsCountTowardsMax: 1},
			want: want{restarts: 4, counted: 1, restartingReason: "FailurePolicy_infra", events: []event{
				{"Warning", "FailurePolicy_infra", MessageRestartJobSetIgnoreMaxAction + first},
				{"Warning", ReasonRestartJobSetIgnoreMaxAction, MessageRestartJobSetIgnoreMaxAction + first},
			}}},
		{name: "fail JobSet rule", policy: &jobset.FailurePolicy{MaxRestarts: 5, Rules: []jobset.FailurePolicyRule{{Name: "fatal", Action: jobset.FailJobSet}}},
			want: want{failedReason: ReasonFailJobSetAction,
				events: []event{{"Warning", ReasonFailJobSetAction, MessageFailJobSetAction + first}}}},
		{name: "restart one Job", gates: restartJob, policy: &jobset.FailurePolicy{MaxRestarts: 3, Rules: []jobset.FailurePolicyRule{{Name: "one", Action: jobset.RestartJob}}},
			want: want{jobRestarts: []int32{0, 1}, jobRestartsCounted: []int32{0, 1},
				events: []event{{"Warning", ReasonRestartJobAction, MessageRestartJobAction + first}}}},
		{name: "restart one Job ignoring max leaves the counted list unset", gates: restartJob,
			policy: &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{{Name: "one", Action: jobset.RestartJobAndIgnoreMaxRestarts}}},
			status: jobset.JobSetStatus{ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w", JobRestarts: []int32{0, 4}}}},
			want: want{jobRestarts: []int32{0, 5},
				events: []event{{"Warning", ReasonRestartJobIgnoreMaxAction, MessageRestartJobIgnoreMaxAction + first}}}},
		{name: "restart one Job with the gate off fails the reconcile",
			policy: &jobset.FailurePolicy{MaxRestarts: 3, Rules: []jobset.FailurePolicyRule{{Name: "one", Action: jobset.RestartJob}}},
			want:   want{err: "RestartJob failure policy action cannot be used when the feature gate RestartJob is disabled"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for g, on := range tc.gates {
				features.SetForTest(t, g, on)
			}
			js := testJobSet("js").ReplicatedJob(rjob("w", 2, 1).Obj()).FailurePolicy(tc.policy).Obj()
			js.Status = tc.status
			jobs := allChildJobs(js, ready)
			failedAt(t0, "BackoffLimitExceeded", "boom")(&jobs[1])
			p := ComputePlan(js, Observed{Jobs: jobs, ServiceExists: true}, t0)

			gotErr := ""
			if p.Err != nil {
				gotErr = p.Err.Error()
			}
			if gotErr != tc.want.err {
				t.Errorf("err = %q, want %q", gotErr, tc.want.err)
			}
			gotFailed := ""
			if c := meta.FindStatusCondition(p.Status.Conditions, string(jobset.JobSetFailed)); c != nil && c.Status == metav1.ConditionTrue {
				gotFailed = c.Reason
				if p.Status.TerminalState != "Failed" || p.Finished != jobset.JobSetFailed {
					t.Errorf("terminalState %q finished %q, want Failed", p.Status.TerminalState, p.Finished)
				}
			}
			if gotFailed != tc.want.failedReason {
				t.Errorf("Failed reason = %q, want %q", gotFailed, tc.want.failedReason)
			}
			if p.Status.Restarts != tc.want.restarts || p.Status.RestartsCountTowardsMax != tc.want.counted {
				t.Errorf("restarts %d/%d, want %d/%d", p.Status.Restarts, p.Status.RestartsCountTowardsMax, tc.want.restarts, tc.want.counted)
			}
			rs := findReplicatedJobStatus(p.Status.ReplicatedJobsStatus, "w")
			if d := cmp.Diff(tc.want.jobRestarts, rs.JobRestarts); d != "" {
				t.Errorf("jobRestarts (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.want.jobRestartsCounted, rs.JobRestartsCountTowardsMax); d != "" {
				t.Errorf("jobRestartsCountTowardsMax (-want +got):\n%s", d)
			}
			gotRestarting := ""
			if c := meta.FindStatusCondition(p.Status.Conditions, string(jobset.JobSetRestarting)); c != nil && c.Status == metav1.ConditionTrue {
				gotRestarting = c.Reason
			}
			if gotRestarting != tc.want.restartingReason {
				t.Errorf("RestartingJobSet reason = %q, want %q", gotRestarting, tc.want.restartingReason)
			}
			if d := cmp.Diff(tc.want.events, p.Events, cmp.AllowUnexported(event{})); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			if len(p.allCreates())+len(p.DeleteJobs)+len(p.SuspendJobs)+len(p.ResumeJobs) != 0 {
				t.Errorf("a failure reconcile must only record the outcome, got job operations")
			}
		})
	}
}

func TestSuccessPolicyMet(t *testing.T) {
	js := testJobSet("js").ReplicatedJob(rjob("a", 2, 1).Obj(), rjob("b", 1, 1).Obj()).Obj()
	a0, a1, b0 := childJob(js, 0, 0, completed), childJob(js, 0, 1, completed), childJob(js, 1, 0, completed)
	tests := []struct {
		name      string
		policy    *jobset.SuccessPolicy
		succeeded []batchv1.Job
		want      bool
	}{
		{"default All, none", nil, nil, false},
		{"default All, some", nil, []batchv1.Job{a0, b0}, false},
		{"default All, all", nil, []batchv1.Job{a0, a1, b0}, true},
		{"Any, one", &jobset.SuccessPolicy{Operator: jobset.OperatorAny}, []batchv1.Job{b0}, true},
		{"Any with target, other rjob", &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"a"}}, []batchv1.Job{b0}, false},
		{"Any with target, target rjob", &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"a"}}, []batchv1.Job{a1}, true},
		{"All with target, all targets", &jobset.SuccessPolicy{Operator: jobset.OperatorAll, TargetReplicatedJobs: []string{"a"}}, []batchv1.Job{a0, a1}, true},
		{"All with target, partial", &jobset.SuccessPolicy{Operator: jobset.OperatorAll, TargetReplicatedJobs: []string{"a"}}, []batchv1.Job{a0, b0}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := js.DeepCopy()
			js.Spec.SuccessPolicy = tc.policy
			if got := successPolicyMet(defaulted(js), ptrs(tc.succeeded)); got != tc.want {
				t.Errorf("successPolicyMet = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDependenciesReached(t *testing.T) {
	st := func(name string, ready, succeeded, failed int32) jobset.ReplicatedJobStatus {
		return jobset.ReplicatedJobStatus{Name: name, Ready: ready, Succeeded: succeeded, Failed: failed}
	}
	dep := func(status jobset.DependsOnStatus) *jobset.ReplicatedJob {
		return &jobset.ReplicatedJob{Name: "b", Replicas: 1, DependsOn: []jobset.DependsOn{{Name: "a", Status: status}}}
	}
	seen := map[string]int32{"a": 2, "b": 1}
	tests := []struct {
		name     string
		rjob     *jobset.ReplicatedJob
		statuses []jobset.ReplicatedJobStatus
		want     bool
	}{
		{"no dependency", &jobset.ReplicatedJob{Name: "b"}, nil, true},
		{"no status yet", dep(jobset.DependencyReady), nil, false},
		{"Ready: not all", dep(jobset.DependencyReady), []jobset.ReplicatedJobStatus{st("a", 1, 0, 0)}, false},
		{"Ready: ready, succeeded and failed count", dep(jobset.DependencyReady), []jobset.ReplicatedJobStatus{st("a", 0, 1, 1)}, true},
		{"Complete: ready is not enough", dep(jobset.DependencyComplete), []jobset.ReplicatedJobStatus{st("a", 2, 0, 0)}, false},
		{"Complete: all succeeded", dep(jobset.DependencyComplete), []jobset.ReplicatedJobStatus{st("a", 0, 2, 0)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := dependenciesReached(tc.rjob, seen, tc.statuses); got != tc.want {
				t.Errorf("dependenciesReached = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTTLAfterFinished(t *testing.T) {
	finishedAt := func(at time.Time) jobset.JobSetStatus {
		return jobset.JobSetStatus{Conditions: []metav1.Condition{{Type: "Completed", Status: "True", LastTransitionTime: metav1.NewTime(at)}}}
	}
	tests := []struct {
		name        string
		ttl         *int32
		status      jobset.JobSetStatus
		wantExpired bool
		wantWait    time.Duration
	}{
		{"no ttl", nil, finishedAt(t0.Add(-time.Hour)), false, 0},
		{"not finished", ptr.To[int32](1), jobset.JobSetStatus{}, false, 0},
		{"waiting", ptr.To[int32](60), finishedAt(t0.Add(-20 * time.Second)), false, 40 * time.Second},
		{"expired", ptr.To[int32](60), finishedAt(t0.Add(-60 * time.Second)), true, 0},
		{"zero ttl", ptr.To[int32](0), finishedAt(t0), true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := testJobSet("js").ReplicatedJob(rjob("a", 1, 1).Obj()).Obj()
			js.Spec.TTLSecondsAfterFinished = tc.ttl
			js.Status = tc.status
			expired, wait := ttlAfterFinished(js, t0)
			if expired != tc.wantExpired || wait != tc.wantWait {
				t.Errorf("got %v %v, want %v %v", expired, wait, tc.wantExpired, tc.wantWait)
			}
		})
	}
}
