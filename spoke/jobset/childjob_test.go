package jobset

import (
	"crypto/sha1"
	"encoding/hex"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func TestBuildJobMetadata(t *testing.T) {
	js := testJobSet("train").ReplicatedJob(rjob("leader", 1, 1).Obj(), rjob("workers", 3, 4).Obj()).Obj()
	js.Status.Restarts = 2
	job := buildJob(defaulted(js), 1, 2)

	sum := sha1.Sum([]byte("ns/train-workers-2"))
	want := map[string]string{
		jobset.JobSetNameKey:         "train",
		jobset.JobSetUIDKey:          "train-uid",
		jobset.ReplicatedJobNameKey:  "workers",
		jobset.ReplicatedJobReplicas: "3",
		jobset.GlobalReplicasKey:     "4",
		jobset.JobIndexKey:           "2",
		jobset.JobGlobalIndexKey:     "3",
		jobset.JobKey:                hex.EncodeToString(sum[:]),
		jobset.RestartsKey:           "2",
		jobset.GroupNameKey:          "default",
		jobset.GroupReplicasKey:      "4",
		jobset.JobGroupIndexKey:      "3",
	}
	if job.Name != "train-workers-2" || job.Namespace != "ns" {
		t.Errorf("name = %s/%s, want ns/train-workers-2", job.Namespace, job.Name)
	}
	for name, got := range map[string]map[string]string{
		"job labels": job.Labels, "job annotations": job.Annotations,
		"pod labels": job.Spec.Template.Labels, "pod annotations": job.Spec.Template.Annotations,
	} {
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
	wantOwner := []metav1.OwnerReference{{APIVersion: "jobset.x-k8s.io/v1alpha2", Kind: "JobSet", Name: "train", UID: "train-uid", Controller: ptr.To(true)}}
	if d := cmp.Diff(wantOwner, job.OwnerReferences, cmpopts.IgnoreFields(metav1.OwnerReference{}, "BlockOwnerDeletion")); d != "" {
		t.Errorf("ownerReferences: want the JobSet as controller (-want +got):\n%s", d)
	}
	if got := ptr.Deref(job.Spec.CompletionMode, ""); got != batchv1.IndexedCompletion {
		t.Errorf("completionMode = %q, want Indexed", got)
	}
	if got := job.Spec.Template.Spec.RestartPolicy; got != corev1.RestartPolicyOnFailure {
		t.Errorf("restartPolicy = %q, want OnFailure", got)
	}
	if got := job.Spec.Template.Spec.Subdomain; got != "train" {
		t.Errorf("subdomain = %q, want train", got)
	}
	if ptr.Deref(job.Spec.Suspend, true) {
		t.Errorf("suspend = %v, want false", job.Spec.Suspend)
	}
	if got := *job.Spec.Parallelism; got != 4 {
		t.Errorf("parallelism = %d, want the template's 4", got)
	}

	// The per-Job restart attempt exists with the RestartJob gate only.
	features.SetForTest(t, features.RestartJob, true)
	js.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "workers", JobRestarts: []int32{0, 0, 3}}}
	job = buildJob(defaulted(js), 1, 2)
	if got := job.Labels[JobRestartAttemptKey]; got != "3" {
		t.Errorf("%s = %q, want 3", JobRestartAttemptKey, got)
	}
	if got := job.Spec.Template.Annotations[JobRestartAttemptKey]; got != "3" {
		t.Errorf("pod annotation %s = %q, want 3", JobRestartAttemptKey, got)
	}
}

func TestBuildJobVariants(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*jobset.JobSet)
		check  func(*testing.T, *batchv1.Job)
	}{{
		name: "template labels and annotations are kept",
		mutate: func(js *jobset.JobSet) {
			js.Spec.ReplicatedJobs[0].Template.Labels = map[string]string{"team": "a"}
			js.Spec.ReplicatedJobs[0].Template.Spec.Template.Annotations = map[string]string{"note": "x"}
		},
		check: func(t *testing.T, job *batchv1.Job) {
			if job.Labels["team"] != "a" || job.Spec.Template.Annotations["note"] != "x" {
				t.Errorf("template metadata lost: job labels %v, pod annotations %v", job.Labels, job.Spec.Template.Annotations)
			}
			if _, ok := job.Spec.Template.Labels["team"]; ok {
				t.Errorf("Job template label leaked onto pods")
			}
		},
	}, {
		name:   "suspended JobSet creates suspended Jobs",
		mutate: func(js *jobset.JobSet) { js.Spec.Suspend = ptr.To(true) },
		check: func(t *testing.T, job *batchv1.Job) {
			if !ptr.Deref(job.Spec.Suspend, false) {
				t.Errorf("suspend = %v, want true", job.Spec.Suspend)
			}
		},
	}, {
		name:   "DNS hostnames disabled: no subdomain",
		mutate: func(js *jobset.JobSet) { js.Spec.Network = &jobset.Network{EnableDNSHostnames: ptr.To(false)} },
		check: func(t *testing.T, job *batchv1.Job) {
			if job.Spec.Template.Spec.Subdomain != "" {
				t.Errorf("subdomain = %q, want none", job.Spec.Template.Spec.Subdomain)
			}
		},
	}, {
		name:   "custom subdomain",
		mutate: func(js *jobset.JobSet) { js.Spec.Network = &jobset.Network{Subdomain: "net"} },
		check: func(t *testing.T, job *batchv1.Job) {
			if job.Spec.Template.Spec.Subdomain != "net" {
				t.Errorf("subdomain = %q, want net", job.Spec.Template.Spec.Subdomain)
			}
		},
	}, {
		name: "coordinator label and annotation",
		mutate: func(js *jobset.JobSet) {
			js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "leader", JobIndex: 0, PodIndex: 1}
		},
		check: func(t *testing.T, job *batchv1.Job) {
			want := "js-leader-0-1.js"
			for _, m := range []map[string]string{job.Labels, job.Annotations, job.Spec.Template.Labels, job.Spec.Template.Annotations} {
				if m[jobset.CoordinatorKey] != want {
					t.Errorf("coordinator = %q, want %q", m[jobset.CoordinatorKey], want)
				}
			}
		},
	}, {
		name:   "JobSet-level exclusive topology",
		mutate: func(js *jobset.JobSet) { js.Annotations = map[string]string{jobset.ExclusiveKey: "rack"} },
		check: func(t *testing.T, job *batchv1.Job) {
			if job.Annotations[jobset.ExclusiveKey] != "rack" || job.Spec.Template.Annotations[jobset.ExclusiveKey] != "rack" {
				t.Errorf("exclusive annotation missing: %v / %v", job.Annotations, job.Spec.Template.Annotations)
			}
			if _, ok := job.Labels[jobset.ExclusiveKey]; ok {
				t.Errorf("exclusive topology must not be a label")
			}
			if len(job.Spec.Template.Spec.NodeSelector) != 0 {
				t.Errorf("nodeSelector = %v, want none without the node-selector strategy", job.Spec.Template.Spec.NodeSelector)
			}
		},
	}, {
		name: "replicatedJob-level exclusive topology wins",
		mutate: func(js *jobset.JobSet) {
			js.Annotations = map[string]string{jobset.ExclusiveKey: "rack"}
			js.Spec.ReplicatedJobs[0].Template.Annotations = map[string]string{jobset.ExclusiveKey: "zone"}
		},
		check: func(t *testing.T, job *batchv1.Job) {
			if job.Annotations[jobset.ExclusiveKey] != "zone" || job.Spec.Template.Annotations[jobset.ExclusiveKey] != "zone" {
				t.Errorf("exclusive = %q/%q, want zone", job.Annotations[jobset.ExclusiveKey], job.Spec.Template.Annotations[jobset.ExclusiveKey])
			}
		},
	}, {
		name: "node-selector strategy",
		mutate: func(js *jobset.JobSet) {
			js.Annotations = map[string]string{jobset.ExclusiveKey: "rack", jobset.NodeSelectorStrategyKey: "true"}
		},
		check: func(t *testing.T, job *batchv1.Job) {
			pod := job.Spec.Template
			if pod.Annotations[jobset.NodeSelectorStrategyKey] != "true" {
				t.Errorf("node-selector annotation missing on pods")
			}
			if got := pod.Spec.NodeSelector[jobset.NamespacedJobKey]; got != "ns_js-leader-0" {
				t.Errorf("nodeSelector = %q, want ns_js-leader-0", got)
			}
			want := corev1.Toleration{Key: jobset.NoScheduleTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
			if len(pod.Spec.Tolerations) != 1 || pod.Spec.Tolerations[0] != want {
				t.Errorf("tolerations = %v, want %v", pod.Spec.Tolerations, want)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := testJobSet("js").ReplicatedJob(rjob("leader", 1, 1).Obj()).Obj()
			tc.mutate(js)
			tc.check(t, buildJob(defaulted(js), 0, 0))
		})
	}
}

func TestIndexes(t *testing.T) {
	js := defaulted(testJobSet("js").ReplicatedJob(
		rjob("a", 2, 1).GroupName("g1").Obj(),
		rjob("b", 3, 1).GroupName("g2").Obj(),
		rjob("c", 4, 1).GroupName("g1").Obj(),
	).Obj())
	tests := []struct {
		rjob, idx                       int
		global, groupReplicas, groupIdx int
	}{
		{0, 0, 0, 6, 0},
		{0, 1, 1, 6, 1},
		{1, 0, 2, 3, 0},
		{1, 2, 4, 3, 2},
		{2, 0, 5, 6, 2},
		{2, 3, 8, 6, 5},
	}
	for _, tc := range tests {
		if got := globalJobIndex(js, tc.rjob, tc.idx); got != tc.global {
			t.Errorf("globalJobIndex(%d,%d) = %d, want %d", tc.rjob, tc.idx, got, tc.global)
		}
		replicas, idx := groupPosition(js, tc.rjob, tc.idx)
		if replicas != tc.groupReplicas || idx != tc.groupIdx {
			t.Errorf("groupPosition(%d,%d) = %d,%d, want %d,%d", tc.rjob, tc.idx, replicas, idx, tc.groupReplicas, tc.groupIdx)
		}
	}
	if got := globalReplicas(js); got != 9 {
		t.Errorf("globalReplicas = %d, want 9", got)
	}
}

func TestResumedPodTemplate(t *testing.T) {
	job := childJob(testJobSet("js").ReplicatedJob(rjob("a", 1, 1).Obj()).Obj(), 0, 0)
	job.Spec.Template.Labels["added-by-job-controller"] = "x"
	job.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "old", Operator: corev1.TolerationOpExists}}
	template := corev1.PodTemplateSpec{}
	template.Labels = map[string]string{"kueue": "admitted"}
	template.Annotations = map[string]string{"note": "n"}
	template.Spec.NodeSelector = map[string]string{"pool": "gpu"}
	template.Spec.Tolerations = []corev1.Toleration{{Key: "old", Operator: corev1.TolerationOpExists}, {Key: "new", Operator: corev1.TolerationOpExists}}
	template.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "gate"}}

	got := resumedPodTemplate(&job, &template)
	if got.Labels["added-by-job-controller"] != "x" || got.Labels["kueue"] != "admitted" || got.Labels[jobset.JobSetNameKey] != "js" {
		t.Errorf("labels not merged: %v", got.Labels)
	}
	if got.Annotations["note"] != "n" || got.Spec.NodeSelector["pool"] != "gpu" {
		t.Errorf("annotations/nodeSelector not merged: %v %v", got.Annotations, got.Spec.NodeSelector)
	}
	if len(got.Spec.Tolerations) != 2 || len(got.Spec.SchedulingGates) != 1 {
		t.Errorf("tolerations %v / gates %v not merged without duplicates", got.Spec.Tolerations, got.Spec.SchedulingGates)
	}
	if _, ok := job.Spec.Template.Labels["kueue"]; ok {
		t.Errorf("resumedPodTemplate mutated the Job")
	}
	if r := (jobResume{job: &job, template: resumedPodTemplate(&job, &corev1.PodTemplateSpec{})}); r.templateChanged() {
		t.Errorf("empty template must not change the Job's template")
	}
}

func TestBuildService(t *testing.T) {
	js := testJobSet("js").ReplicatedJob(rjob("a", 1, 1).Obj()).Obj()
	svc := buildService(defaulted(js))
	type service struct {
		Name, ClusterIP, SelectorJobSet, LabelJobSet string
		PublishNotReadyAddresses                     bool
		OwnerUIDs                                    []types.UID
	}
	got := service{Name: svc.Name, ClusterIP: svc.Spec.ClusterIP, SelectorJobSet: svc.Spec.Selector[jobset.JobSetNameKey],
		LabelJobSet: svc.Labels[jobset.JobSetNameKey], PublishNotReadyAddresses: svc.Spec.PublishNotReadyAddresses}
	for _, o := range svc.OwnerReferences {
		got.OwnerUIDs = append(got.OwnerUIDs, o.UID)
	}
	want := service{Name: "js", ClusterIP: corev1.ClusterIPNone, SelectorJobSet: "js", LabelJobSet: "js", PublishNotReadyAddresses: true, OwnerUIDs: []types.UID{"js-uid"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("service (-want +got):\n%s", d)
	}
	js.Spec.Network = &jobset.Network{Subdomain: "sub", PublishNotReadyAddresses: ptr.To(false)}
	svc = buildService(defaulted(js))
	if svc.Name != "sub" || svc.Spec.PublishNotReadyAddresses {
		t.Errorf("name %q publishNotReady %v, want sub/false", svc.Name, svc.Spec.PublishNotReadyAddresses)
	}
}
