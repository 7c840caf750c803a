package webhook

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

const (
	testTopology = "example.com/rack"
	testJobKey   = "0123abcd"
	testJobUID   = types.UID("job-uid-1")
)

// exclusivePod builds a pod the way the Job controller creates it for a
// JobSet with exclusive placement.
func exclusivePod(name string, index string, jobUID types.UID) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: "ns",
			Labels: map[string]string{
				jobset.JobSetNameKey:        "js",
				jobset.ReplicatedJobNameKey: "workers",
				jobset.JobIndexKey:          "0",
				jobset.JobKey:               testJobKey,
			},
			Annotations: map[string]string{jobset.ExclusiveKey: testTopology},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "Job", Name: "js-workers-0", UID: jobUID, Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if index != "" {
		p.Labels[completionIndexKey] = index
		p.Annotations[completionIndexKey] = index
	}
	return p
}

func scheduled(p *corev1.Pod, node string) *corev1.Pod {
	p.Spec.NodeName = node
	return p
}

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestSetExclusiveAffinity(t *testing.T) {
	pod := exclusivePod("leader", "0", testJobUID)
	pod.Labels[jobset.PriorityKey] = "100"
	userTerm := corev1.PodAffinityTerm{TopologyKey: "zone", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}
	pod.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{userTerm}}}

	setExclusiveAffinity(pod, testTopology)
	setExclusiveAffinity(pod, testTopology) // reinvocation adds nothing

	aff := pod.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	anti := pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if len(aff) != 2 || !apiequality.Semantic.DeepEqual(aff[0], userTerm) {
		t.Fatalf("pod affinity = %+v, want user term kept plus one exclusive term", aff)
	}
	if len(anti) != 1 {
		t.Fatalf("anti-affinity = %+v, want one term", anti)
	}
	wantAff := corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: jobset.JobKey, Operator: metav1.LabelSelectorOpIn, Values: []string{testJobKey}},
		}},
		TopologyKey: testTopology, NamespaceSelector: &metav1.LabelSelector{},
	}
	wantAnti := corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: jobset.JobKey, Operator: metav1.LabelSelectorOpExists},
			{Key: jobset.JobKey, Operator: metav1.LabelSelectorOpNotIn, Values: []string{testJobKey}},
			{Key: jobset.PriorityKey, Operator: metav1.LabelSelectorOpIn, Values: []string{"100"}},
		}},
		TopologyKey: testTopology, NamespaceSelector: &metav1.LabelSelector{},
	}
	if !apiequality.Semantic.DeepEqual(aff[1], wantAff) {
		t.Errorf("affinity term = %+v, want %+v", aff[1], wantAff)
	}
	if !apiequality.Semantic.DeepEqual(anti[0], wantAnti) {
		t.Errorf("anti-affinity term = %+v, want %+v", anti[0], wantAnti)
	}
}

func TestPickLeader(t *testing.T) {
	now := metav1.Now()
	follower := exclusivePod("f", "1", testJobUID)
	live := scheduled(exclusivePod("l", "0", testJobUID), "n1")
	stale := scheduled(exclusivePod("old", "0", "previous-job-uid"), "n2")
	deleting := exclusivePod("del", "0", testJobUID)
	deleting.DeletionTimestamp = &now
	failed := exclusivePod("failed", "0", testJobUID)
	failed.Status.Phase = corev1.PodFailed
	succeeded := scheduled(exclusivePod("done", "0", testJobUID), "n3")
	succeeded.Status.Phase = corev1.PodSucceeded

	cases := []struct {
		name       string
		candidates []*corev1.Pod
		want       string
		wantErr    string
	}{
		{name: "none", wantErr: "expected 1 leader pod (js-workers-0-0), but got 0. this is an expected, transient error"},
		{name: "one live", candidates: []*corev1.Pod{live}, want: "l"},
		{name: "stale leader of a previous Job is ignored", candidates: []*corev1.Pod{stale, live}, want: "l"},
		{name: "only stale", candidates: []*corev1.Pod{stale}, wantErr: "but got 0"},
		{name: "deleting and failed ignored", candidates: []*corev1.Pod{deleting, failed, live}, want: "l"},
		{name: "two live", candidates: []*corev1.Pod{live, live}, wantErr: "but got 2"},
		{name: "succeeded leader still names the domain", candidates: []*corev1.Pod{failed, succeeded}, want: "done"},
		{name: "live leader preferred over a succeeded one", candidates: []*corev1.Pod{succeeded, live}, want: "l"},
		{name: "only failed", candidates: []*corev1.Pod{failed}, wantErr: "but got 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var items []corev1.Pod
			for _, p := range tc.candidates {
				items = append(items, *p)
			}
			got, err := pickLeader(items, follower)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.want {
				t.Errorf("leader = %s, want %s", got.Name, tc.want)
			}
		})
	}
}

func TestPodWebhook(t *testing.T) {
	rackNode := node("n1", map[string]string{testTopology: "rack-a"})
	bareNode := node("n2", nil)

	cases := []struct {
		name     string
		existing []client.Object
		pod      *corev1.Pod
		// wantSelector is the follower's expected nodeSelector value for the
		// topology key after mutation ("" = not set).
		wantSelector string
		wantAffinity bool
		// wantDefaultErr is the mutating webhook's error, if any.
		wantDefaultErr string
		// wantLabels are labels the mutating webhook must set.
		wantLabels map[string]string
		// wantReject lists strings the validation error must contain; nil
		// means admitted.
		wantReject []string
		// afterMutate tweaks the pod between mutation and validation, as a
		// later mutating webhook or a bypassing client could.
		afterMutate func(p *corev1.Pod)
	}{
		{
			name: "not a JobSet pod",
			pod: func() *corev1.Pod {
				p := exclusivePod("x", "1", testJobUID)
				delete(p.Labels, jobset.JobSetNameKey)
				return p
			}(),
		},
		{
			name: "JobSet pod without exclusive placement",
			pod: func() *corev1.Pod {
				p := exclusivePod("x", "1", testJobUID)
				delete(p.Annotations, jobset.ExclusiveKey)
				return p
			}(),
		},
		{
			name: "node-selector strategy is left to the reconciler",
			pod: func() *corev1.Pod {
				p := exclusivePod("x", "1", testJobUID)
				p.Annotations[jobset.NodeSelectorStrategyKey] = "true"
				return p
			}(),
		},
		{
			name:         "leader gets affinity and is admitted",
			pod:          exclusivePod("leader", "0", testJobUID),
			wantAffinity: true,
		},
		{
			name:         "non-indexed pod acts as its own leader",
			pod:          exclusivePod("p", "", testJobUID),
			wantAffinity: true,
		},
		{
			name:         "follower follows scheduled leader",
			existing:     []client.Object{rackNode, scheduled(exclusivePod("leader", "0", testJobUID), "n1")},
			pod:          exclusivePod("f", "3", testJobUID),
			wantSelector: "rack-a",
		},
		{
			name:       "follower before leader exists",
			existing:   []client.Object{rackNode},
			pod:        exclusivePod("f", "1", testJobUID),
			wantReject: []string{"follower pod node selector not set"},
		},
		{
			name:       "follower before leader is scheduled",
			existing:   []client.Object{rackNode, exclusivePod("leader", "0", testJobUID)},
			pod:        exclusivePod("f", "1", testJobUID),
			wantReject: []string{"follower pod node selector not set"},
		},
		{
			name:       "leader of a previous Job incarnation is not followed",
			existing:   []client.Object{rackNode, scheduled(exclusivePod("leader", "0", "old-uid"), "n1")},
			pod:        exclusivePod("f", "1", testJobUID),
			wantReject: []string{"follower pod node selector not set"},
		},
		{
			name: "leader in another namespace is not followed",
			existing: []client.Object{rackNode, func() client.Object {
				l := scheduled(exclusivePod("leader", "0", testJobUID), "n1")
				l.Namespace = "other"
				return l
			}()},
			pod:        exclusivePod("f", "1", testJobUID),
			wantReject: []string{"follower pod node selector not set"},
		},
		{
			name:           "leader's node lacks the topology label",
			existing:       []client.Object{bareNode, scheduled(exclusivePod("leader", "0", testJobUID), "n2")},
			pod:            exclusivePod("f", "1", testJobUID),
			wantDefaultErr: "node does not have topology label: example.com/rack",
		},
		{
			name:           "leader's node is gone",
			existing:       []client.Object{scheduled(exclusivePod("leader", "0", testJobUID), "n9")},
			pod:            exclusivePod("f", "1", testJobUID),
			wantDefaultErr: `nodes "n9" not found`,
		},
		{
			name:     "follower with another nodeSelector, leader not scheduled",
			existing: []client.Object{rackNode, exclusivePod("leader", "0", testJobUID)},
			pod: func() *corev1.Pod {
				p := exclusivePod("f", "1", testJobUID)
				p.Spec.NodeSelector = map[string]string{"pool": "a"}
				return p
			}(),
			wantReject: []string{"follower pod node selector for topology domain not found. missing selector: example.com/rack"},
		},
		{
			name:        "follower with the selector, leader scheduled since",
			existing:    []client.Object{rackNode, exclusivePod("leader", "0", testJobUID)},
			pod:         exclusivePod("f", "1", testJobUID),
			afterMutate: func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{testTopology: "rack-a"} },
			wantReject:  []string{"leader pod not yet scheduled, not creating follower pod. this is an expected, transient error"},
		},
		{
			name: "JobSet pod with a priority is labelled with it",
			pod: func() *corev1.Pod {
				p := exclusivePod("x", "1", testJobUID)
				delete(p.Annotations, jobset.ExclusiveKey)
				p.Spec.Priority = ptr.To[int32](1000)
				return p
			}(),
			wantLabels: map[string]string{jobset.PriorityKey: "1000"},
		},
		{
			name:         "follower whose selector was removed is rejected",
			existing:     []client.Object{rackNode, scheduled(exclusivePod("leader", "0", testJobUID), "n1")},
			pod:          exclusivePod("f", "1", testJobUID),
			wantSelector: "rack-a",
			afterMutate:  func(p *corev1.Pod) { delete(p.Spec.NodeSelector, testTopology) },
			wantReject:   []string{"follower pod node selector for topology domain not found. missing selector: example.com/rack"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(tc.existing...).Build()
			w := &podWebhook{reader: c}
			ctx := context.Background()
			pod := tc.pod.DeepCopy()
			err := w.Default(ctx, pod)
			if tc.wantDefaultErr != "" {
				if err == nil || err.Error() != tc.wantDefaultErr {
					t.Fatalf("Default: %v, want %q", err, tc.wantDefaultErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Default: %v", err)
			}
			for k, v := range tc.wantLabels {
				if got := pod.Labels[k]; got != v {
					t.Errorf("label %s = %q, want %q", k, got, v)
				}
			}

			if got := pod.Spec.NodeSelector[testTopology]; got != tc.wantSelector {
				t.Errorf("nodeSelector[%s] = %q, want %q", testTopology, got, tc.wantSelector)
			}
			hasAffinity := pod.Spec.Affinity != nil && pod.Spec.Affinity.PodAntiAffinity != nil
			if hasAffinity != tc.wantAffinity {
				t.Errorf("affinity set = %v, want %v", hasAffinity, tc.wantAffinity)
			}
			if !tc.wantAffinity && tc.wantSelector == "" && tc.wantLabels == nil && !apiequality.Semantic.DeepEqual(pod, tc.pod) {
				t.Errorf("pod mutated unexpectedly:\n got %+v\nwant %+v", pod.Spec, tc.pod.Spec)
			}
			if tc.afterMutate != nil {
				tc.afterMutate(pod)
			}

			_, err = w.ValidateCreate(ctx, pod)
			if tc.wantReject == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("admitted, want rejection containing %q", tc.wantReject)
			}
			for _, s := range tc.wantReject {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("rejection does not contain %q:\n%v", s, err)
				}
			}
		})
	}
}
