package dispatch

import (
	"fmt"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Kueue on the hub decides when a JobSet may run, the fleet where. Kueue's
// JobSet integration suspends, at creation, every JobSet that names a
// LocalQueue; it unsuspends the JobSet when its ClusterQueue admits it,
// merging the flavor's node labels and tolerations into the pod templates;
// it suspends it again to preempt it, and counts its quota as released once
// no replicated Job is active; it sees completion in the JobSet's
// conditions. The hub mirrors the member's status (active counts,
// conditions), so all of these work on a hub JobSet. Kueue's integration
// reconciles JobSets whatever their spec.managedBy (only its MultiKueue
// defaulting looks at the field, and leaves a set value alone), so the
// fleet's managedBy stays.

// heldByQueue reports the LocalQueue of a JobSet that names one and is
// suspended: the queue holds it until admission, and the hub does not
// place it. A JobSet without a queue that its user suspends is placed and
// held suspended on its member, as before: the user chose to stage it, and
// resuming it then starts it where it was placed, at once.
func heldByQueue(js *jobset.JobSet) (string, bool) {
	q := js.Labels[fleet.KueueQueueNameLabel]
	return q, q != "" && suspended(js)
}

// awaitingAdmissionMessage says what a held JobSet waits for, and what to do
// on a hub without Kueue.
func awaitingAdmissionMessage(queue string) string {
	return fmt.Sprintf("suspended by Kueue until LocalQueue %s admits it: it is placed on a member once admitted. "+
		"Without Kueue on the hub, remove the %s label or set spec.suspend=false", queue, fleet.KueueQueueNameLabel)
}
