package jobset

import (
	"crypto/sha1" //nolint:gosec // see jobKey
	"encoding/hex"
	"maps"
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// buildJob returns the child Job for index jobIdx of replicatedJobs[rjobIdx].
// js must already be defaulted (jobset.Default on a copy); its status
// supplies the restart attempt the Job belongs to.
func buildJob(js *jobset.JobSet, rjobIdx, jobIdx int) *batchv1.Job {
	rjob := &js.Spec.ReplicatedJobs[rjobIdx]
	name := jobset.JobName(js.Name, rjob.Name, jobIdx)
	job := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   js.Namespace,
			Labels:      maps.Clone(rjob.Template.Labels),
			Annotations: maps.Clone(rjob.Template.Annotations),
			OwnerReferences: []metav1.OwnerReference{
				*metav1.NewControllerRef(js, jobset.GroupVersion.WithKind("JobSet")),
			},
		},
		Spec: *rjob.Template.Spec.DeepCopy(),
	}
	meta := jobMetadata(js, rjobIdx, jobIdx)
	job.Labels = withEntries(job.Labels, meta.labels)
	job.Annotations = withEntries(job.Annotations, meta.annotations)
	pod := &job.Spec.Template
	pod.Labels = withEntries(pod.Labels, meta.labels)
	pod.Annotations = withEntries(pod.Annotations, meta.annotations)

	if js.DNSHostnamesEnabled() {
		// The Indexed Job sets each pod's hostname to <job>-<index>; with the
		// subdomain it resolves through the JobSet's headless Service.
		pod.Spec.Subdomain = js.Subdomain()
	}

	_, exclusive := job.Annotations[jobset.ExclusiveKey]
	_, nodeSelectorStrategy := job.Annotations[jobset.NodeSelectorStrategyKey]
	if exclusive && nodeSelectorStrategy {
		// The node-selector strategy relies on nodes labelled (and tainted)
		// per Job by the user ahead of time, instead of pod affinities.
		if pod.Spec.NodeSelector == nil {
			pod.Spec.NodeSelector = map[string]string{}
		}
		pod.Spec.NodeSelector[jobset.NamespacedJobKey] = js.Namespace + "_" + name
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
			Key:      jobset.NoScheduleTaintKey,
			Operator: corev1.TolerationOpExists,
			Effect:   corev1.TaintEffectNoSchedule,
		})
	}

	job.Spec.Suspend = ptr.To(js.IsSuspended())
	addClaimVolumes(js, &job.Spec.Template.Spec)
	return job
}

type objectMetadata struct {
	labels, annotations map[string]string
}

// jobMetadata is what the JobSet stamps on a child Job and on its pod
// template. The labels are repeated as annotations so that pods can read them
// through the downward API even when a value is not a valid label value.
func jobMetadata(js *jobset.JobSet, rjobIdx, jobIdx int) objectMetadata {
	rjob := &js.Spec.ReplicatedJobs[rjobIdx]
	name := jobset.JobName(js.Name, rjob.Name, jobIdx)
	groupReplicas, groupIndex := groupPosition(js, rjobIdx, jobIdx)
	labels := map[string]string{
		jobset.JobSetNameKey:         js.Name,
		jobset.JobSetUIDKey:          string(js.UID),
		jobset.ReplicatedJobNameKey:  rjob.Name,
		jobset.ReplicatedJobReplicas: strconv.Itoa(int(rjob.Replicas)),
		jobset.GlobalReplicasKey:     strconv.Itoa(globalReplicas(js)),
		jobset.JobIndexKey:           strconv.Itoa(jobIdx),
		jobset.JobGlobalIndexKey:     strconv.Itoa(globalJobIndex(js, rjobIdx, jobIdx)),
		jobset.JobKey:                jobKey(js.Namespace, name),
		jobset.RestartsKey:           strconv.Itoa(int(js.Status.Restarts)),
		jobset.GroupNameKey:          rjob.GroupName,
		jobset.GroupReplicasKey:      strconv.Itoa(groupReplicas),
		jobset.JobGroupIndexKey:      strconv.Itoa(groupIndex),
	}
	if features.Enabled(features.RestartJob) {
		labels[JobRestartAttemptKey] = strconv.Itoa(int(individualRestarts(&js.Status, rjob.Name, jobIdx)))
	}
	if js.Spec.Coordinator != nil {
		labels[jobset.CoordinatorKey] = jobset.CoordinatorEndpoint(js)
	}
	annotations := maps.Clone(labels)
	// Exclusive placement can be asked for on the whole JobSet or on one
	// replicatedJob; the replicatedJob's setting wins. The pod webhooks read
	// these annotations from the pods.
	for _, src := range []map[string]string{js.Annotations, rjob.Template.Annotations} {
		if topology, ok := src[jobset.ExclusiveKey]; ok {
			annotations[jobset.ExclusiveKey] = topology
			if v, ok := src[jobset.NodeSelectorStrategyKey]; ok {
				annotations[jobset.NodeSelectorStrategyKey] = v
			}
		}
	}
	return objectMetadata{labels: labels, annotations: annotations}
}

// withEntries returns dst with every entry of src set, allocating dst if needed.
func withEntries(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	maps.Copy(dst, src)
	return dst
}

// jobKey identifies a Job across restarts and namespaces in a label-safe
// way. It is the SHA-1 hex digest (40 characters) of "<namespace>/<name>",
// as upstream computes it: a SHA-256 hex digest (64 characters) would not fit
// in a label value (63 at most). Not used for security.
func jobKey(namespace, jobName string) string {
	sum := sha1.Sum([]byte(namespace + "/" + jobName)) //nolint:gosec // an identifier, not a security hash
	return hex.EncodeToString(sum[:])
}

// globalReplicas is the number of Jobs in the whole JobSet.
func globalReplicas(js *jobset.JobSet) int {
	total := 0
	for _, rjob := range js.Spec.ReplicatedJobs {
		total += int(rjob.Replicas)
	}
	return total
}

// globalJobIndex numbers the JobSet's Jobs 0..N-1 in spec order.
func globalJobIndex(js *jobset.JobSet, rjobIdx, jobIdx int) int {
	idx := jobIdx
	for _, rjob := range js.Spec.ReplicatedJobs[:rjobIdx] {
		idx += int(rjob.Replicas)
	}
	return idx
}

// groupPosition returns how many Jobs the replicatedJob's group has and the
// Job's index within the group, counting group members in spec order.
func groupPosition(js *jobset.JobSet, rjobIdx, jobIdx int) (replicas, index int) {
	group := js.Spec.ReplicatedJobs[rjobIdx].GroupName
	for i, rjob := range js.Spec.ReplicatedJobs {
		if rjob.GroupName != group {
			continue
		}
		if i < rjobIdx {
			index += int(rjob.Replicas)
		}
		replicas += int(rjob.Replicas)
	}
	return replicas, index + jobIdx
}

// individualRestarts is how often Job jobIdx of a replicatedJob was restarted
// on its own (RestartJob actions) — the value its job-restart-attempt label
// must carry.
func individualRestarts(st *jobset.JobSetStatus, rjobName string, jobIdx int) int32 {
	for _, rs := range st.ReplicatedJobsStatus {
		if rs.Name == rjobName && jobIdx < len(rs.JobRestarts) {
			return rs.JobRestarts[jobIdx]
		}
	}
	return 0
}

// resumedPodTemplate merges the scheduling-related fields of the
// replicatedJob's pod template into the Job's pod template. While a JobSet is
// suspended these may change (Kueue does so when admitting a workload) and
// the Job's template accepts them only while the Job is suspended, so they
// are applied just before resuming. Values are merged rather than replaced
// because the Job controller adds labels of its own.
func resumedPodTemplate(job *batchv1.Job, template *corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	out := *job.Spec.Template.DeepCopy()
	out.Labels = mergeMaps(out.Labels, template.Labels)
	out.Annotations = mergeMaps(out.Annotations, template.Annotations)
	out.Spec.NodeSelector = mergeMaps(out.Spec.NodeSelector, template.Spec.NodeSelector)
	out.Spec.Tolerations = mergeSlices(out.Spec.Tolerations, template.Spec.Tolerations)
	out.Spec.SchedulingGates = mergeSlices(out.Spec.SchedulingGates, template.Spec.SchedulingGates)
	return out
}

func mergeMaps(dst, src map[string]string) map[string]string {
	if len(src) == 0 {
		return dst
	}
	out := maps.Clone(dst)
	return withEntries(out, src)
}

// mergeSlices appends the items of src that dst lacks (semantic equality, as
// tolerations hold pointers).
func mergeSlices[T any](dst, src []T) []T {
	out := slices.Clone(dst)
	for _, item := range src {
		if !slices.ContainsFunc(out, func(have T) bool { return equality.Semantic.DeepEqual(have, item) }) {
			out = append(out, item)
		}
	}
	return out
}
