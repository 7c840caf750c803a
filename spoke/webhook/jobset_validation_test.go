package webhook

import (
	"context"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// testJobSet is the seed's pytorch JobSet plus a one-pod "leader" rjob,
// defaulted as admission would.
func testJobSet() *jobset.JobSet {
	js := &jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: "pytorch", Namespace: "default"},
		Spec: jobset.JobSetSpec{
			ReplicatedJobs: []jobset.ReplicatedJob{
				rjob("leader", 1, 1),
				rjob("workers", 2, 4),
			},
		},
	}
	jobset.Default(js)
	return js
}

func rjob(name string, replicas, completions int32) jobset.ReplicatedJob {
	return jobset.ReplicatedJob{
		Name:     name,
		Replicas: replicas,
		Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Parallelism: ptr.To(completions),
			Completions: ptr.To(completions),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
			}},
		}},
	}
}

func TestValidateJobSet(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(js *jobset.JobSet)
		// wantPaths must all appear in the error; empty means valid.
		wantPaths []string
		wantText  string
	}{
		{name: "valid seed jobset", mutate: func(*jobset.JobSet) {}},
		{
			name: "valid everything set",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", JobIndex: 1, PodIndex: 3}
				js.Spec.SuccessPolicy = &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"leader"}}
				js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 3, RestartStrategy: jobset.BlockingRecreate, Rules: []jobset.FailurePolicyRule{
					{Name: "a", Action: jobset.RestartJob, OnJobFailureReasons: []string{batchv1.JobReasonPodFailurePolicy}, OnJobFailureMessagePatterns: []string{"(?i)node .* not ready"}, TargetReplicatedJobs: []string{"workers"}},
					{Name: "b_2:x", Action: jobset.FailJobSet},
				}}
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "leader", Status: jobset.DependencyReady}}
				js.Spec.Network.Subdomain = "svc"
				js.Spec.ManagedBy = ptr.To("kueue.x-k8s.io/multikueue")
			},
		},
		{
			// "<js>-workers-1" is 59 characters; its pods' names are not.
			name: "job name fits, indexed pod names would be too long",
			mutate: func(js *jobset.JobSet) {
				js.Name = strings.Repeat("a", 49)
			},
			wantPaths: []string{"spec.replicatedJobs[1].name"},
			wantText:  "pod names generated",
		},
		{
			name: "pod names exactly 63 characters",
			mutate: func(js *jobset.JobSet) {
				js.Name = strings.Repeat("a", 45)
			},
		},
		{
			name: "non-indexed job name exactly 63 characters",
			mutate: func(js *jobset.JobSet) {
				js.Name = strings.Repeat("a", 53)
				for i := range js.Spec.ReplicatedJobs {
					js.Spec.ReplicatedJobs[i].Template.Spec.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
				}
			},
		},
		{
			name: "non-indexed job name 64 characters",
			mutate: func(js *jobset.JobSet) {
				js.Name = strings.Repeat("a", 54)
				for i := range js.Spec.ReplicatedJobs {
					js.Spec.ReplicatedJobs[i].Template.Spec.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
				}
			},
			wantPaths: []string{"spec.replicatedJobs[1].name"},
			wantText:  "is 64 characters",
		},
		{
			name: "job name too long",
			mutate: func(js *jobset.JobSet) {
				js.Name = strings.Repeat("a", 60)
			},
			wantPaths: []string{"spec.replicatedJobs[0].name", "spec.replicatedJobs[1].name"},
			wantText:  "must be no more than 63",
		},
		{
			name: "pod name uses largest pod index",
			mutate: func(js *jobset.JobSet) {
				// workers-1-<podIdx>: 1000 completions make the index 3 digits.
				// 45+len("-workers-1-999-xxxxx")=65, while with 4 completions it is 63.
				js.Name = strings.Repeat("a", 45)
				js.Spec.ReplicatedJobs[1].Template.Spec.Completions = ptr.To[int32](1000)
			},
			wantPaths: []string{"spec.replicatedJobs[1].name"},
			wantText:  "pod names generated",
		},
		{
			name: "rjob name not a DNS label",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].Name = "Leader_1"
			},
			wantPaths: []string{"spec.replicatedJobs[0].name"},
		},
		{
			name: "replicas times parallelism overflows",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Replicas = 1 << 30
			},
			wantPaths: []string{"spec.replicatedJobs[1].replicas"},
		},
		{
			name:      "bad group name",
			mutate:    func(js *jobset.JobSet) { js.Spec.ReplicatedJobs[0].GroupName = "Group!" },
			wantPaths: []string{"spec.replicatedJobs[0].groupName"},
		},
		{
			name:      "bad subdomain",
			mutate:    func(js *jobset.JobSet) { js.Spec.Network.Subdomain = "my.svc" },
			wantPaths: []string{"spec.network.subdomain"},
		},
		{
			name:      "coordinator names unknown replicatedJob",
			mutate:    func(js *jobset.JobSet) { js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "nope"} },
			wantPaths: []string{"spec.coordinator.replicatedJob"},
		},
		{
			name: "coordinator job index out of range",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", JobIndex: 2}
			},
			wantPaths: []string{"spec.coordinator.jobIndex"},
		},
		{
			name: "coordinator pod index out of range",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", PodIndex: 4}
			},
			wantPaths: []string{"spec.coordinator.podIndex"},
		},
		{
			name: "coordinator negative indexes",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", JobIndex: -1, PodIndex: -1}
			},
			wantPaths: []string{"spec.coordinator.jobIndex", "spec.coordinator.podIndex"},
		},
		{
			name: "coordinator in non-indexed job",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].Template.Spec.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "leader"}
			},
			wantPaths: []string{"spec.coordinator.replicatedJob"},
			wantText:  "Indexed",
		},
		{
			name: "success policy target unknown",
			mutate: func(js *jobset.JobSet) {
				js.Spec.SuccessPolicy.TargetReplicatedJobs = []string{"leader", "ghost"}
			},
			wantPaths: []string{"spec.successPolicy.targetReplicatedJobs[1]"},
		},
		{
			name: "failure policy rule target unknown",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.FailJobSet, TargetReplicatedJobs: []string{"ghost"}},
				}}
			},
			wantPaths: []string{"spec.failurePolicy.rules[0].targetReplicatedJobs[0]"},
		},
		{
			name: "failure policy rule names invalid and duplicate",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "ok", Action: jobset.FailJobSet},
					{Name: "9bad", Action: jobset.FailJobSet},
					{Name: "ok", Action: jobset.RestartJob},
					{Name: strings.Repeat("x", 129), Action: jobset.RestartJob},
					{Name: "trailing:", Action: jobset.RestartJob},
				}}
			},
			wantPaths: []string{
				"spec.failurePolicy.rules[1].name", "spec.failurePolicy.rules[2].name",
				"spec.failurePolicy.rules[3].name", "spec.failurePolicy.rules[4].name",
			},
			wantText: "Duplicate value",
		},
		{
			name: "failure policy unknown reason",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"OOMKilled"}},
				}}
			},
			wantPaths: []string{"spec.failurePolicy.rules[0].onJobFailureReasons[0]"},
		},
		{
			name: "failure policy message pattern does not compile",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.FailJobSet, OnJobFailureMessagePatterns: []string{"ok", "(unclosed"}},
				}}
			},
			wantPaths: []string{"spec.failurePolicy.rules[0].onJobFailureMessagePatterns[1]"},
			wantText:  "RE2",
		},
		{
			name: "in-place restart rejected",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{RestartStrategy: jobset.InPlaceRestart}
			},
			wantPaths: []string{"spec.failurePolicy.restartStrategy"},
			wantText:  "not supported by jobset-fleet",
		},
		{
			name: "first rjob depends on something",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].DependsOn = []jobset.DependsOn{{Name: "workers", Status: jobset.DependencyReady}}
			},
			wantPaths: []string{"spec.replicatedJobs[0].dependsOn"},
		},
		{
			name: "depends on a later rjob",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, rjob("eval", 1, 1))
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "eval", Status: jobset.DependencyComplete}}
			},
			wantPaths: []string{"spec.replicatedJobs[1].dependsOn[0].name"},
		},
		{
			name: "depends on itself",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "workers", Status: jobset.DependencyComplete}}
			},
			wantPaths: []string{"spec.replicatedJobs[1].dependsOn[0].name"},
		},
		{
			name: "more than one dependency",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, rjob("eval", 1, 1))
				js.Spec.ReplicatedJobs[2].DependsOn = []jobset.DependsOn{{Name: "leader", Status: jobset.DependencyComplete}, {Name: "workers", Status: jobset.DependencyComplete}}
			},
			wantPaths: []string{"spec.replicatedJobs[2].dependsOn"},
		},
		{
			name:      "managedBy not a domain-prefixed path",
			mutate:    func(js *jobset.JobSet) { js.Spec.ManagedBy = ptr.To("kueue") },
			wantPaths: []string{"spec.managedBy"},
		},
		{
			name:      "managedBy too long",
			mutate:    func(js *jobset.JobSet) { js.Spec.ManagedBy = ptr.To("example.com/" + strings.Repeat("x", 60)) },
			wantPaths: []string{"spec.managedBy"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := testJobSet()
			tc.mutate(js)
			_, err := jobSetWebhook{}.ValidateCreate(context.Background(), js)
			assertInvalid(t, err, tc.wantPaths, tc.wantText)
		})
	}
}

func TestValidateJobSetUpdate(t *testing.T) {
	cases := []struct {
		name       string
		oldSuspend bool
		newSuspend bool
		mutate     func(js *jobset.JobSet)
		wantPaths  []string
		wantText   string
	}{
		{name: "no change", mutate: func(*jobset.JobSet) {}},
		{
			name:   "suspend toggles freely",
			mutate: func(*jobset.JobSet) {}, newSuspend: true,
		},
		{
			name: "running: replicas immutable",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Replicas = 3
			},
			wantPaths: []string{"spec.replicatedJobs[1].replicas"},
			wantText:  "while the JobSet is suspended",
		},
		{
			name: "running: pod labels immutable",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].Template.Spec.Template.Labels = map[string]string{"a": "b"}
			},
			wantPaths: []string{"spec.replicatedJobs[0].template"},
		},
		{
			name: "running: rjob added",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, rjob("eval", 1, 1))
			},
			wantPaths: []string{"spec.replicatedJobs"},
		},
		{
			name:       "suspended: scheduling fields may change",
			oldSuspend: true, newSuspend: true,
			mutate: func(js *jobset.JobSet) {
				pt := &js.Spec.ReplicatedJobs[1].Template.Spec.Template
				pt.Labels = map[string]string{"kueue.x-k8s.io/queue": "q"}
				pt.Annotations = map[string]string{"a": "b"}
				pt.Spec.NodeSelector = map[string]string{"pool": "a"}
				pt.Spec.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
				pt.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "kueue"}}
			},
		},
		{
			name:       "being suspended: nodeSelector may change",
			newSuspend: true,
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "a"}
			},
		},
		{
			name:       "being resumed: nodeSelector may change",
			oldSuspend: true,
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "a"}
			},
		},
		{
			name:       "suspended: container image still immutable",
			oldSuspend: true, newSuspend: true,
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Template.Spec.Template.Spec.Containers[0].Image = "other"
			},
			wantPaths: []string{"spec.replicatedJobs[1].template"},
		},
		{
			name:       "suspended: name and dependsOn still immutable",
			oldSuspend: true, newSuspend: true,
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Name = "renamed"
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "leader", Status: jobset.DependencyReady}}
			},
			wantPaths: []string{"spec.replicatedJobs[1].name", "spec.replicatedJobs[1].dependsOn"},
		},
		{
			name:   "managedBy cleared means the same controller",
			mutate: func(js *jobset.JobSet) { js.Spec.ManagedBy = nil },
		},
		{
			name:      "managedBy handed to another controller",
			mutate:    func(js *jobset.JobSet) { js.Spec.ManagedBy = ptr.To("kueue.x-k8s.io/multikueue") },
			wantPaths: []string{"spec.managedBy"},
		},
		{
			name: "coordinator changed to invalid",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "leader", PodIndex: 1}
			},
			wantPaths: []string{"spec.coordinator.podIndex"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldJS := testJobSet()
			oldJS.Spec.Suspend = ptr.To(tc.oldSuspend)
			newJS := oldJS.DeepCopy()
			newJS.Spec.Suspend = ptr.To(tc.newSuspend)
			tc.mutate(newJS)
			_, err := jobSetWebhook{}.ValidateUpdate(context.Background(), oldJS, newJS)
			assertInvalid(t, err, tc.wantPaths, tc.wantText)
		})
	}
}

// An object stored before the webhook was installed has no defaults; an
// update (say, a label) arrives defaulted and must not count as a change.
func TestValidateJobSetUpdateUndefaultedOld(t *testing.T) {
	oldJS := &jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: "pytorch"},
		Spec:       jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{rjob("workers", 1, 4)}},
	}
	newJS := oldJS.DeepCopy()
	newJS.Labels = map[string]string{"team": "a"}
	jobset.Default(newJS)
	if _, err := (jobSetWebhook{}).ValidateUpdate(context.Background(), oldJS, newJS); err != nil {
		t.Fatalf("metadata-only update of an undefaulted JobSet rejected: %v", err)
	}
	if oldJS.Spec.ManagedBy != nil {
		t.Error("validation mutated the old object")
	}
}

func TestJobSetDefault(t *testing.T) {
	js := &jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: "pytorch"},
		Spec:       jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{rjob("workers", 1, 4)}},
	}
	if err := (jobSetWebhook{}).Default(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	tmpl := js.Spec.ReplicatedJobs[0].Template.Spec
	if got := ptr.Deref(tmpl.CompletionMode, ""); got != batchv1.IndexedCompletion {
		t.Errorf("completionMode = %q, want Indexed", got)
	}
	if got := tmpl.Template.Spec.RestartPolicy; got != corev1.RestartPolicyOnFailure {
		t.Errorf("restartPolicy = %q, want OnFailure", got)
	}
	if js.Spec.SuccessPolicy == nil || js.Spec.SuccessPolicy.Operator != jobset.OperatorAll {
		t.Errorf("successPolicy = %+v, want operator All", js.Spec.SuccessPolicy)
	}
	if got := ptr.Deref(js.Spec.ManagedBy, ""); got != jobset.JobSetControllerName {
		t.Errorf("managedBy = %q", got)
	}
	if _, err := (jobSetWebhook{}).ValidateCreate(context.Background(), js); err != nil {
		t.Errorf("defaulted seed JobSet rejected: %v", err)
	}
}

// assertInvalid checks that err is nil when no paths are wanted, and
// otherwise a 422 Invalid whose message names every wanted field path.
func assertInvalid(t *testing.T, err error, wantPaths []string, wantText string) {
	t.Helper()
	if len(wantPaths) == 0 {
		if err != nil {
			t.Fatalf("unexpected rejection: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("accepted, want rejection naming %v", wantPaths)
	}
	if !apierrors.IsInvalid(err) {
		t.Errorf("error is not an Invalid status error: %T %v", err, err)
	}
	msg := err.Error()
	for _, p := range wantPaths {
		if !strings.Contains(msg, p+":") {
			t.Errorf("error does not name field %s:\n%s", p, msg)
		}
	}
	if wantText != "" && !strings.Contains(msg, wantText) {
		t.Errorf("error does not contain %q:\n%s", wantText, msg)
	}
}
