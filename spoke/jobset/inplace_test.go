package jobset

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// In-place restart publishes the attempts the agents must reach, from the
// attempts they report on their pods (upstream KEP 467).
func TestInPlaceRestart(t *testing.T) {
	features.SetForTest(t, features.InPlaceRestart, true)
	pod := func(attempt string, mutate ...func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
		if attempt != "" {
			p.Annotations[jobset.InPlaceRestartAttemptKey] = attempt
		}
		for _, m := range mutate {
			m(&p)
		}
		return p
	}
	restarted := func(n int32) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: n}} }
	}
	failedPod := func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }
	type want struct {
		previous, current *int32
		failed            bool
		err               string
	}
	tests := []struct {
		name   string
		status jobset.JobSetStatus
		pods   []corev1.Pod
		want   want
	}{
		{name: "no reports yet", pods: []corev1.Pod{pod(""), pod(""), pod(""), pod("")}},
		{name: "all pods at attempt 0: barrier lifted", pods: []corev1.Pod{pod("0"), pod("0"), pod("0"), pod("0")},
			want: want{current: ptr.To[int32](0)}},
		{name: "one pod restarted: the others must follow", pods: []corev1.Pod{pod("1"), pod("0"), pod("0"), pod("0")},
			want: want{previous: ptr.To[int32](0)}},
		{name: "previous never goes down", status: jobset.JobSetStatus{PreviousInPlaceRestartAttempt: ptr.To[int32](2)},
			pods: []corev1.Pod{pod("2"), pod("1"), pod("0"), pod("0")}, want: want{previous: ptr.To[int32](2)}},
		{name: "failed pods are ignored", pods: []corev1.Pod{pod("1"), pod("1"), pod("1"), pod("1"), pod("0", failedPod)},
			want: want{current: ptr.To[int32](1)}},
		{name: "a container restarting past maxRestarts fails the JobSet", pods: []corev1.Pod{pod("0", restarted(3))},
			want: want{failed: true}},
		{name: "an attempt past maxRestarts fails the JobSet", pods: []corev1.Pod{pod("3"), pod("0")},
			want: want{failed: true}},
		{name: "uncounted restarts do not use the budget", status: jobset.JobSetStatus{Restarts: 2},
			pods: []corev1.Pod{pod("3"), pod("0")}, want: want{previous: ptr.To[int32](2)}},
		{name: "a bad annotation fails the reconcile", pods: []corev1.Pod{pod("x")},
			want: want{err: "invalid value for annotation jobset.sigs.k8s.io/in-place-restart-attempt, must be non-negative integer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := testJobSet("js").ReplicatedJob(rjob("w", 2, 2).Obj()).
				FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 2, RestartStrategy: jobset.InPlaceRestart}).
				Obj()
			js.Status = tc.status
			p := ComputePlan(js, Observed{Jobs: allChildJobs(js), ServiceExists: true, Pods: tc.pods}, t0)
			got := want{previous: p.Status.PreviousInPlaceRestartAttempt, current: p.Status.CurrentInPlaceRestartAttempt,
				failed: p.Finished == jobset.JobSetFailed}
			if p.Err != nil {
				got.err = p.Err.Error()
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if tc.want.failed {
				c := findCondition(p.Status.Conditions, string(jobset.JobSetFailed))
				want := &metav1.Condition{Type: string(jobset.JobSetFailed), Reason: ReasonReachedMaxRestarts, Message: MessageReachedMaxRestarts}
				if d := cmp.Diff(want, c, cmpopts.IgnoreFields(metav1.Condition{}, "Status", "ObservedGeneration", "LastTransitionTime")); d != "" {
					t.Errorf("Failed condition (-want +got):\n%s", d)
				}
			}
		})
	}
}

func findCondition(conditions []metav1.Condition, typ string) *metav1.Condition {
	for i := range conditions {
		if conditions[i].Type == typ {
			return &conditions[i]
		}
	}
	return nil
}
