package v1alpha2

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// FleetStatus is the jobset-fleet hub's bookkeeping for a JobSet it runs on a
// member cluster. It lives in status because only the hub may write it: a
// user who could edit where a JobSet runs, or its epoch, could bypass
// placement or make a member replace running pods. It is never set on a
// member, so a member's JobSet status has upstream's shape exactly.
type FleetStatus struct {
	// cluster is the member cluster the JobSet is placed on; empty while it
	// waits for one.
	// +optional
	Cluster string `json:"cluster,omitempty"`

	// epoch numbers the hub's placements of this JobSet: it grows with every
	// placement and is never reused, so a member copy made for an earlier
	// placement is known to be stale wherever it turns up.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Epoch int64 `json:"epoch,omitempty"`

	// restartsCarried are the restarts made on earlier placements, each move
	// counting as one; restarts adds them to the current member's.
	// +kubebuilder:validation:Minimum=0
	// +optional
	RestartsCarried int32 `json:"restartsCarried,omitempty"`

	// restartsCountTowardsMaxCarried are the carried restarts that count
	// towards failurePolicy.maxRestarts; the member runs the JobSet with
	// maxRestarts reduced by them.
	// +kubebuilder:validation:Minimum=0
	// +optional
	RestartsCountTowardsMaxCarried int32 `json:"restartsCountTowardsMaxCarried,omitempty"`

	// finishedObservedTime is when the hub first saw the JobSet finished,
	// by the hub's own clock. ttlSecondsAfterFinished counts from it, never
	// from a time a member's clock wrote.
	// +optional
	FinishedObservedTime *metav1.Time `json:"finishedObservedTime,omitempty"`

	// startedEpoch is the epoch whose Pods the hub last saw start on their
	// member (a Job with ready, succeeded or failed Pods, or a restart). It
	// is remembered: a JobSet whose current epoch started is never
	// withdrawn for not starting.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StartedEpoch int64 `json:"startedEpoch,omitempty"`

	// startDeadlineSince is when the start deadline of the current epoch
	// began, by the hub's clock: its dispatch, or its last resume.
	// +optional
	StartDeadlineSince *metav1.Time `json:"startDeadlineSince,omitempty"`

	// withdrawals are the latest placements the hub withdrew because no Pod
	// started there within the start deadline, newest last. The member of
	// one is not a candidate again until its reported capacity differs from
	// what it was at the withdrawal.
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	// +optional
	Withdrawals []Withdrawal `json:"withdrawals,omitempty"`
}

// Withdrawal is one placement the hub withdrew because it did not start.
type Withdrawal struct {
	// cluster is the member the JobSet was withdrawn from.
	// +kubebuilder:validation:MaxLength=253
	Cluster string `json:"cluster"`
	// epoch is the placement withdrawn.
	// +kubebuilder:validation:Minimum=0
	Epoch int64 `json:"epoch"`
	// capacity fingerprints what the member reported (allocatable and free
	// resources) when the JobSet was withdrawn. Empty for a withdrawal
	// because the member was drained: its cordon keeps the JobSet away, and
	// once uncordoned the member is a candidate again.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Capacity string `json:"capacity,omitempty"`
	// time is when the hub withdrew it, by its clock.
	Time metav1.Time `json:"time"`
}
