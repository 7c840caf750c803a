package jobset

import (
	"time"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// ttlAfterFinished says whether a finished JobSet is due for deletion and,
// if not yet, how long until it is. Without ttlSecondsAfterFinished it never
// is (zero wait, no deletion).
func ttlAfterFinished(js *jobset.JobSet, now time.Time) (expired bool, wait time.Duration) {
	ttl := js.Spec.TTLSecondsAfterFinished
	finished := finishedCondition(&js.Status)
	if ttl == nil || finished == nil {
		return false, 0
	}
	left := finished.LastTransitionTime.Add(time.Duration(*ttl) * time.Second).Sub(now)
	if left <= 0 {
		return true, 0
	}
	return false, left
}
