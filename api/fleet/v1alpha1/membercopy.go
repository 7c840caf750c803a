package v1alpha1

import (
	"strconv"
	"strings"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// How a member copy (the JobSet an agent runs on its member for a dispatch)
// is read. The agent writes these keys; the agent, `unjoin` and the hub's
// fence read them, all through the functions here.

// DispatchKey is the value of DispatchAnnotation on d's copies:
// "<hub namespace>/<dispatch name>".
func DispatchKey(d *JobSetDispatch) string { return d.Namespace + "/" + d.Name }

// DispatchOf is the dispatch a member copy was made for, read from its
// DispatchAnnotation; ok is false when js carries none.
func DispatchOf(js *jobset.JobSet) (namespace, name string, ok bool) {
	return strings.Cut(js.Annotations[DispatchAnnotation], "/")
}

// Epoch is the epoch a member copy was made for, 0 when unlabelled or
// unparsable (so it counts as older than any dispatch).
func Epoch(js *jobset.JobSet) int64 {
	e, err := strconv.ParseInt(js.Labels[EpochLabel], 10, 64)
	if err != nil {
		return 0
	}
	return e
}

// RestartOffsets are the restarts earlier copies spent, from a copy's
// annotations (0 when absent or unparsable).
func RestartOffsets(js *jobset.JobSet) (restarts, towardsMax int32) {
	parse := func(key string) int32 {
		v, err := strconv.ParseInt(js.Annotations[key], 10, 32)
		if err != nil || v < 0 {
			return 0
		}
		return int32(v)
	}
	return parse(RestartsOffsetAnnotation), parse(RestartsTowardsMaxOffsetAnnotation)
}

// ReportedStatus is the status reported for a copy: the copy's own, with
// the restarts of earlier copies of the same epoch added, so the count the
// hub sees never goes backwards.
func ReportedStatus(js *jobset.JobSet) jobset.JobSetStatus {
	st := *js.Status.DeepCopy()
	restarts, towardsMax := RestartOffsets(js)
	st.Restarts += restarts
	st.RestartsCountTowardsMax += towardsMax
	return st
}
