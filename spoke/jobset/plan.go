package jobset

import (
	"fmt"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// plan is everything one reconcile will change, computed without side
// effects from what was observed.
type plan struct {
	// status is the JobSet status to save (patched only if it differs from
	// the observed one).
	status v1alpha2.JobSetStatus
	// events are emitted once the status is saved: they announce the
	// transitions recorded in it.
	events []event

	deleteJobs    []*batchv1.Job
	createService *corev1.Service
	createJobs    []*batchv1.Job
	suspendJobs   []*batchv1.Job
	resumeJobs    []jobResume

	// deleteJobSet asks for the finished JobSet to be deleted (TTL).
	deleteJobSet bool
	// requeueAfter is set when time alone will make the plan change (TTL).
	requeueAfter time.Duration
	// finished is set when this reconcile finishes the JobSet.
	finished v1alpha2.JobSetConditionType

	now metav1.Time
}

type event struct {
	eventType, reason, note string
}

// jobResume unsuspends a Job, first bringing its pod template up to date.
type jobResume struct {
	job      *batchv1.Job
	template corev1.PodTemplateSpec
}

func (r jobResume) templateChanged() bool {
	return !equality.Semantic.DeepEqual(r.template, r.job.Spec.Template)
}

// computePlan decides what to do for a JobSet (with its observed status)
// whose controller-owned child Jobs are jobs. It is pure: time comes in as
// now.
func computePlan(observed *v1alpha2.JobSet, jobs []batchv1.Job, serviceExists bool, now time.Time) plan {
	js := observed.DeepCopy()
	v1alpha2.Default(js)
	p := plan{status: *js.Status.DeepCopy(), now: metav1.NewTime(now)}
	kids := classify(js, jobs)
	p.status.ReplicatedJobsStatus = replicatedJobStatuses(js, kids, js.Status.ReplicatedJobsStatus)

	if finishedCondition(&p.status) != nil {
		// Nothing runs after the end, whatever the reason it came.
		p.deleteJobs = notDeleting(slices.Concat(kids.active, kids.previous))
		p.deleteJobSet, p.requeueAfter = ttlAfterFinished(js, now)
		return p
	}

	p.deleteJobs = notDeleting(kids.previous)
	if len(kids.failed) > 0 {
		// The outcome is recorded first; the next reconcile, triggered by
		// the status change, deletes and recreates Jobs accordingly.
		p.applyFailure(js, decideFailure(js, kids.failed))
		return p
	}
	if successPolicyMet(js, kids.succeeded) {
		p.complete()
		return p
	}

	if js.DNSHostnamesEnabled() && !serviceExists {
		p.createService = buildService(js)
	}

	gate := gateStartup(js, p.status.ReplicatedJobsStatus)
	// BlockingRecreate: no new Job until every Job of the previous attempt is
	// gone, so old and new pods never run side by side.
	blocked := len(kids.previous) > 0 && js.Spec.FailurePolicy != nil &&
		js.Spec.FailurePolicy.RestartStrategy == v1alpha2.BlockingRecreate
	if !blocked {
		for i, rjob := range js.Spec.ReplicatedJobs {
			if !gate.open[i] {
				continue
			}
			for idx := range int(rjob.Replicas) {
				if !kids.names[v1alpha2.JobName(js.Name, rjob.Name, idx)] {
					p.createJobs = append(p.createJobs, buildJob(js, i, idx))
				}
			}
		}
	}

	if js.IsSuspended() {
		for _, job := range notDeleting(kids.active) {
			if !jobSuspended(job) {
				p.suspendJobs = append(p.suspendJobs, job)
			}
		}
		p.setCondition(metav1.Condition{
			Type: string(v1alpha2.JobSetSuspended), Status: metav1.ConditionTrue,
			Reason: ReasonSuspended, Message: "JobSet is suspended",
		}, corev1.EventTypeNormal)
		p.clearRestarting(ReasonRestartingJobSetSuspended, "JobSet is suspended")
	} else {
		for _, job := range notDeleting(kids.active) {
			i := replicatedJobIndex(js, job)
			if !jobSuspended(job) || i < 0 || !gate.open[i] {
				continue
			}
			p.resumeJobs = append(p.resumeJobs, jobResume{
				job:      job,
				template: resumedPodTemplate(job, &js.Spec.ReplicatedJobs[i].Template.Spec.Template),
			})
		}
		p.setCondition(metav1.Condition{
			Type: string(v1alpha2.JobSetSuspended), Status: metav1.ConditionFalse,
			Reason: ReasonResumed, Message: "JobSet is resumed",
		}, corev1.EventTypeNormal)
	}

	if gate.inOrder {
		p.setStartupConditions(js, gate, kids)
	}
	if !js.IsSuspended() && allJobsReady(js, p.status.ReplicatedJobsStatus) {
		p.clearRestarting(ReasonRestartingJobsReady, fmt.Sprintf("all Jobs of restart attempt %d are ready", p.status.Restarts))
	}
	return p
}

// setStartupConditions reports the progress of an InOrder startup.
func (p *plan) setStartupConditions(js *v1alpha2.JobSet, gate startupGate, kids children) {
	if gate.waitingOn < 0 {
		p.setCondition(metav1.Condition{
			Type: string(v1alpha2.JobSetStartupPolicyCompleted), Status: metav1.ConditionTrue,
			Reason: ReasonInOrderCompleted, Message: "all replicatedJobs have started in order",
		}, corev1.EventTypeNormal)
		return
	}
	// Once startup completed, a replicatedJob whose pods stop being ready
	// does not send the JobSet back to "starting" unless Jobs after it are
	// actually being held back (missing, or suspended).
	if conditionTrue(&p.status, string(v1alpha2.JobSetStartupPolicyCompleted)) && !heldBack(js, gate.waitingOn, kids) {
		return
	}
	p.setCondition(metav1.Condition{
		Type: string(v1alpha2.JobSetStartupPolicyInProgress), Status: metav1.ConditionTrue,
		Reason:  ReasonInOrderInProgress,
		Message: fmt.Sprintf("waiting for all Jobs of replicatedJob %s to be ready", js.Spec.ReplicatedJobs[gate.waitingOn].Name),
	}, corev1.EventTypeNormal)
}

// heldBack: some replicatedJob after index waitingOn lacks Jobs or has
// suspended ones.
func heldBack(js *v1alpha2.JobSet, waitingOn int, kids children) bool {
	later := js.Spec.ReplicatedJobs[waitingOn+1:]
	for _, rjob := range later {
		for idx := range int(rjob.Replicas) {
			if !kids.names[v1alpha2.JobName(js.Name, rjob.Name, idx)] {
				return true
			}
		}
	}
	for _, job := range kids.active {
		if jobSuspended(job) && slices.ContainsFunc(later, func(r v1alpha2.ReplicatedJob) bool {
			return r.Name == job.Labels[v1alpha2.ReplicatedJobNameKey]
		}) {
			return true
		}
	}
	return false
}

// allJobsReady: every Job of the current run is ready or succeeded.
func allJobsReady(js *v1alpha2.JobSet, statuses []v1alpha2.ReplicatedJobStatus) bool {
	for _, rjob := range js.Spec.ReplicatedJobs {
		s := findReplicatedJobStatus(statuses, rjob.Name)
		if s == nil || s.Ready+s.Succeeded < rjob.Replicas {
			return false
		}
	}
	return true
}

func replicatedJobIndex(js *v1alpha2.JobSet, job *batchv1.Job) int {
	name := job.Labels[v1alpha2.ReplicatedJobNameKey]
	return slices.IndexFunc(js.Spec.ReplicatedJobs, func(r v1alpha2.ReplicatedJob) bool { return r.Name == name })
}

func (p *plan) event(eventType, reason, note string) {
	p.events = append(p.events, event{eventType: eventType, reason: reason, note: note})
}

// setCondition records c and, when its status flips, an event.
func (p *plan) setCondition(c metav1.Condition, eventType string) {
	if setCondition(&p.status, c, p.now) {
		p.event(eventType, c.Reason, c.Message)
	}
}

func (p *plan) fail(reason, message string) {
	p.setCondition(metav1.Condition{
		Type: string(v1alpha2.JobSetFailed), Status: metav1.ConditionTrue, Reason: reason, Message: message,
	}, corev1.EventTypeWarning)
	p.status.TerminalState = string(v1alpha2.JobSetFailed)
	p.finished = v1alpha2.JobSetFailed
	p.clearRestarting(ReasonRestartingJobSetFailed, "JobSet failed")
}

func (p *plan) complete() {
	p.setCondition(metav1.Condition{
		Type: string(v1alpha2.JobSetCompleted), Status: metav1.ConditionTrue,
		Reason: ReasonAllJobsCompleted, Message: "JobSet completed successfully",
	}, corev1.EventTypeNormal)
	p.status.TerminalState = string(v1alpha2.JobSetCompleted)
	p.finished = v1alpha2.JobSetCompleted
	p.clearRestarting(ReasonRestartingJobSetCompleted, "JobSet completed")
}

// setRestarting marks the JobSet as restarting. No event of its own: the
// restart action already emitted one.
func (p *plan) setRestarting(reason, message string) {
	setCondition(&p.status, metav1.Condition{
		Type: ConditionRestarting, Status: metav1.ConditionTrue, Reason: reason, Message: message,
	}, p.now)
}

func (p *plan) clearRestarting(reason, message string) {
	p.setCondition(metav1.Condition{
		Type: ConditionRestarting, Status: metav1.ConditionFalse, Reason: reason, Message: message,
	}, corev1.EventTypeNormal)
}
