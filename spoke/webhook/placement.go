package webhook

import (
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Exclusive placement puts each child Job of a JobSet in its own topology
// domain (the value of a node label, e.g. a rack), with no other Job sharing
// it. The leader pod (completion index 0) carries the hard constraints:
// affinity to pods of its own Job and anti-affinity to pods of every other
// Job. Followers then only need a nodeSelector for the domain the scheduler
// picked for their leader, which is far cheaper for the scheduler than
// evaluating inter-pod (anti-)affinity on every pod.

// completionIndexKey is set by the Job controller as both a label and an
// annotation on pods of Indexed Jobs.
const completionIndexKey = batchv1.JobCompletionIndexAnnotation

// exclusiveTopologyKey returns the node label key that defines the pod's
// exclusive domain, and whether this webhook is responsible for the pod at
// all: it must be a JobSet pod using exclusive placement and not the
// node-selector strategy (where the reconciler pins pods to pre-labelled
// nodes itself and no admission-time help is needed).
func exclusiveTopologyKey(pod *corev1.Pod) (string, bool) {
	if !isJobSetPod(pod) {
		return "", false
	}
	if _, ok := pod.Annotations[jobset.NodeSelectorStrategyKey]; ok {
		return "", false
	}
	key := pod.Annotations[jobset.ExclusiveKey]
	return key, key != ""
}

// isJobSetPod: the pod is a JobSet's (the reconciler puts the jobset-name
// key on pod templates as both a label and an annotation).
func isJobSetPod(pod *corev1.Pod) bool {
	_, label := pod.Labels[jobset.JobSetNameKey]
	_, annotation := pod.Annotations[jobset.JobSetNameKey]
	return label || annotation
}

// completionIndex reads the pod's completion index, preferring the label
// (which is what the leader lookup selects on).
func completionIndex(pod *corev1.Pod) (string, bool) {
	if v, ok := pod.Labels[completionIndexKey]; ok {
		return v, true
	}
	v, ok := pod.Annotations[completionIndexKey]
	return v, ok
}

// isLeader reports whether the pod anchors its Job's placement. A pod
// without a completion index (a NonIndexed Job) has no leader to follow, so
// it carries the affinity rules itself: slower to schedule, still exclusive.
func isLeader(pod *corev1.Pod) bool {
	idx, ok := completionIndex(pod)
	return !ok || idx == "0"
}

// exclusiveAffinityTerms returns the leader's pod affinity term (same Job,
// same domain) and anti-affinity term (no other Job in the domain). Both span
// all namespaces: job-key hashes "<namespace>/<job>", so it is unique
// cluster-wide and exclusivity holds across namespaces.
func exclusiveAffinityTerms(jobKey, priority, topologyKey string) (affinity, antiAffinity corev1.PodAffinityTerm) {
	affinity = corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: jobset.JobKey, Operator: metav1.LabelSelectorOpIn, Values: []string{jobKey}},
		}},
		TopologyKey:       topologyKey,
		NamespaceSelector: &metav1.LabelSelector{},
	}
	antiAffinity = corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: jobset.JobKey, Operator: metav1.LabelSelectorOpExists},
			{Key: jobset.JobKey, Operator: metav1.LabelSelectorOpNotIn, Values: []string{jobKey}},
			// Only Jobs of the same priority exclude each other.
			{Key: jobset.PriorityKey, Operator: metav1.LabelSelectorOpIn, Values: []string{priority}},
		}},
		TopologyKey:       topologyKey,
		NamespaceSelector: &metav1.LabelSelector{},
	}
	return affinity, antiAffinity
}

// setExclusiveAffinity adds the leader's required terms, keeping any the
// user wrote. It is idempotent so a webhook reinvocation adds nothing.
func setExclusiveAffinity(pod *corev1.Pod, topologyKey string) {
	aff, anti := exclusiveAffinityTerms(pod.Labels[jobset.JobKey], pod.Labels[jobset.PriorityKey], topologyKey)
	if pod.Spec.Affinity == nil {
		pod.Spec.Affinity = &corev1.Affinity{}
	}
	a := pod.Spec.Affinity
	if a.PodAffinity == nil {
		a.PodAffinity = &corev1.PodAffinity{}
	}
	if a.PodAntiAffinity == nil {
		a.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = appendTerm(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, aff)
	a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = appendTerm(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, anti)
}

func appendTerm(terms []corev1.PodAffinityTerm, t corev1.PodAffinityTerm) []corev1.PodAffinityTerm {
	if slices.ContainsFunc(terms, func(x corev1.PodAffinityTerm) bool { return apiequality.Semantic.DeepEqual(x, t) }) {
		return terms
	}
	return append(terms, t)
}

// leaderSelector selects the completion-index-0 pods of the follower's Job.
// job-key is stable across JobSet restarts (it hashes the Job name), so the
// caller must still match owner UIDs; see pickLeader.
func leaderSelector(follower *corev1.Pod) (labels.Selector, error) {
	jobKey := follower.Labels[jobset.JobKey]
	if jobKey == "" {
		return nil, fmt.Errorf("pod has no %s label", jobset.JobKey)
	}
	return labels.SelectorFromSet(labels.Set{jobset.JobKey: jobKey, completionIndexKey: "0"}), nil
}

// pickLeader chooses the leader of the follower's Job among candidates
// selected by leaderSelector: the live one, else one that succeeded on a node.
// A leader being deleted or failed does not anchor the Job (its replacement
// will), and one owned by a different Job UID is a leftover from before a
// restart (same name, same job-key, new Job).
func pickLeader(candidates []corev1.Pod, follower *corev1.Pod) (*corev1.Pod, error) {
	owner := controllerUID(follower)
	var live []*corev1.Pod
	// A leader that already succeeded still tells the domain: its Job ran
	// there, and a follower created late (a slow Job controller, or a
	// replacement for a failed follower) must join it.
	var finished *corev1.Pod
	for i := range candidates {
		p := &candidates[i]
		if p.DeletionTimestamp != nil || controllerUID(p) != owner {
			continue
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			if p.Spec.NodeName != "" {
				finished = p
			}
		case corev1.PodFailed:
			// Its replacement decides the domain.
		default:
			live = append(live, p)
		}
	}
	switch {
	case len(live) == 1:
		return live[0], nil
	case len(live) == 0 && finished != nil:
		return finished, nil
	default:
		// Upstream's words for a leader that is missing or ambiguous.
		return nil, fmt.Errorf("expected 1 leader pod (%s), but got %d. this is an expected, transient error", leaderName(follower), len(live))
	}
}

// leaderName is the name (without the random suffix) of the follower's
// leader: <jobset>-<replicatedJob>-<jobIndex>-0.
func leaderName(follower *corev1.Pod) string {
	l := follower.Labels
	return fmt.Sprintf("%s-%s-%s-0", l[jobset.JobSetNameKey], l[jobset.ReplicatedJobNameKey], l[jobset.JobIndexKey])
}

func controllerUID(pod *corev1.Pod) string {
	if ref := metav1.GetControllerOf(pod); ref != nil {
		return string(ref.UID)
	}
	return ""
}
