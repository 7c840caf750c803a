package jobset

import (
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Plan is everything one reconcile will change, computed without side
// effects from what was observed. Its steps are upstream's, in upstream's
// order; apply carries them out in that order and stops at the first that
// fails, leaving the status unsaved, as upstream's reconcile does.
type Plan struct {
	// Status is the JobSet status to save (patched only if it differs from
	// the observed one).
	Status jobset.JobSetStatus
	// Events are emitted once the status is saved: they announce the
	// transitions recorded in it.
	Events []event

	DeleteJobs []*batchv1.Job
	// DeleteJobSet asks for the finished JobSet to be deleted (TTL).
	DeleteJobSet bool
	// RequeueAfter is set when time alone will make the plan change (TTL).
	RequeueAfter time.Duration

	CreateService *corev1.Service
	CreatePVCs    []*corev1.PersistentVolumeClaim
	ScaleJobs     []jobScale
	// CreateJobs holds the Jobs to create per replicatedJob, in spec order:
	// a replicatedJob whose Jobs cannot all be created stops the rest.
	CreateJobs  [][]*batchv1.Job
	SuspendJobs []*batchv1.Job
	ResumeJobs  []jobResume

	// Err fails the reconcile before anything is saved (upstream does so
	// for a failure policy action whose feature gate is off).
	Err error

	// Finished is set when this reconcile finishes the JobSet.
	Finished jobset.JobSetConditionType

	Now metav1.Time
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

// Observed is what a reconcile reads besides the JobSet.
type Observed struct {
	// Jobs are the Jobs the JobSet controls.
	Jobs          []batchv1.Job
	ServiceExists bool
	// Pods are the JobSet's pods, read only for in-place restart.
	Pods []corev1.Pod
}

// ComputePlan decides what to do for a JobSet (with its observed status).
// It is pure: time comes in as now.
func ComputePlan(js0 *jobset.JobSet, obs Observed, now time.Time) Plan {
	js := js0.DeepCopy()
	// The webhook defaults what is stored; defaulting a copy here keeps a
	// JobSet stored without it (webhooks disabled) from stalling.
	jobset.Default(js)
	p := Plan{Status: *js.Status.DeepCopy(), Now: metav1.NewTime(now)}
	kids := classify(js, obs.Jobs)
	p.Status.ReplicatedJobsStatus = replicatedJobStatuses(js, kids)
	statuses := p.Status.ReplicatedJobsStatus

	if finishedCondition(&js.Status) != nil {
		// Nothing runs after the end, whatever the reason it came.
		p.DeleteJobs = notDeleting(kids.active)
		p.DeleteJobSet, p.RequeueAfter = ttlAfterFinished(js, now)
		return p
	}
	p.DeleteJobs = notDeleting(kids.previous)

	if !js.IsSuspended() && allJobsReady(js, statuses) {
		p.clearRestarting(ReasonRestartingJobsReady, MessageRestartingJobsReady)
	}
	if len(kids.failed) > 0 {
		// The outcome is recorded first; the next reconcile, triggered by
		// the status change, deletes and recreates Jobs accordingly.
		if err := p.applyFailure(js, decideFailure(js, kids.failed)); err != nil {
			p.Err = err
		}
		return p
	}
	if len(kids.succeeded) > 0 && successPolicyMet(js, kids.succeeded) {
		p.complete()
		return p
	}

	if js.DNSHostnamesEnabled() && !obs.ServiceExists {
		p.CreateService = buildService(js)
	}
	p.CreatePVCs = buildPVCs(js)
	if features.Enabled(features.ElasticJobSet) {
		p.ScaleJobs = planScaling(js, kids.active)
	}
	p.planJobCreation(js, kids, statuses)
	if js.IsSuspended() {
		p.planSuspend(kids)
	} else {
		p.planResume(js, kids, statuses)
	}
	if inPlaceRestartStrategy(js) && features.Enabled(features.InPlaceRestart) {
		if err := p.inPlaceRestart(js, obs.Pods); err != nil {
			p.Err = err
		}
	}
	return p
}

// planJobCreation creates the missing Jobs of each replicatedJob whose
// dependencies are met. With an InOrder startup (not while suspended) it
// stops at the first replicatedJob whose Jobs are not all running yet.
func (p *Plan) planJobCreation(js *jobset.JobSet, kids children, statuses []jobset.ReplicatedJobStatus) {
	ordered := inOrder(js) && !js.IsSuspended()
	seen := map[string]int32{}
	for i := range js.Spec.ReplicatedJobs {
		rjob := &js.Spec.ReplicatedJobs[i]
		seen[rjob.Name] = rjob.Replicas
		if !dependenciesReached(rjob, seen, statuses) {
			continue
		}
		if ordered && allStarted(rjob.Replicas, findReplicatedJobStatus(statuses, rjob.Name)) {
			continue
		}
		if jobs := missingJobs(js, i, kids); len(jobs) > 0 {
			p.CreateJobs = append(p.CreateJobs, jobs)
		}
		if ordered {
			p.setInOrderInProgress()
			return
		}
	}
	if ordered {
		p.setCondition(metav1.Condition{
			Type: string(jobset.JobSetStartupPolicyCompleted), Status: metav1.ConditionTrue,
			Reason: ReasonInOrderCompleted, Message: MessageInOrderCompleted,
		}, corev1.EventTypeNormal)
	}
}

// missingJobs returns the Jobs of replicatedJobs[rjobIdx] that do not exist.
// BlockingRecreate creates none while any Job of an earlier attempt
// remains, so old and new pods never run side by side.
func missingJobs(js *jobset.JobSet, rjobIdx int, kids children) []*batchv1.Job {
	if len(kids.previous) > 0 && js.Spec.FailurePolicy != nil && js.Spec.FailurePolicy.RestartStrategy == jobset.BlockingRecreate {
		return nil
	}
	rjob := &js.Spec.ReplicatedJobs[rjobIdx]
	var jobs []*batchv1.Job
	for idx := range int(rjob.Replicas) {
		if !kids.names[jobset.JobName(js.Name, rjob.Name, idx)] {
			jobs = append(jobs, buildJob(js, rjobIdx, idx))
		}
	}
	return jobs
}

func (p *Plan) planSuspend(kids children) {
	for _, job := range kids.active {
		if !jobSuspended(job) {
			p.SuspendJobs = append(p.SuspendJobs, job)
		}
	}
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetSuspended), Status: metav1.ConditionTrue,
		Reason: ReasonSuspended, Message: MessageSuspended,
	}, corev1.EventTypeNormal)
	p.clearRestarting(ReasonRestartingJobSetSuspended, MessageSuspended)
}

// planResume resumes the suspended Jobs of each replicatedJob whose
// dependencies are met, bringing their pod templates up to date. With an
// InOrder startup it resumes one replicatedJob at a time, and the JobSet
// counts as resumed only once all have started.
func (p *Plan) planResume(js *jobset.JobSet, kids children, statuses []jobset.ReplicatedJobStatus) {
	ordered := inOrder(js)
	seen := map[string]int32{}
	for i := range js.Spec.ReplicatedJobs {
		rjob := &js.Spec.ReplicatedJobs[i]
		seen[rjob.Name] = rjob.Replicas
		if !dependenciesReached(rjob, seen, statuses) {
			continue
		}
		if ordered && allStarted(rjob.Replicas, findReplicatedJobStatus(statuses, rjob.Name)) {
			continue
		}
		for _, job := range kids.active {
			if jobSuspended(job) && job.Labels[jobset.ReplicatedJobNameKey] == rjob.Name {
				p.ResumeJobs = append(p.ResumeJobs, jobResume{
					job:      job,
					template: resumedPodTemplate(job, &rjob.Template.Spec.Template),
				})
			}
		}
		if ordered {
			p.setInOrderInProgress()
			return
		}
	}
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetSuspended), Status: metav1.ConditionFalse,
		Reason: ReasonResumed, Message: MessageResumed,
	}, corev1.EventTypeNormal)
}

func (p *Plan) setInOrderInProgress() {
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetStartupPolicyInProgress), Status: metav1.ConditionTrue,
		Reason: ReasonInOrderInProgress, Message: MessageInOrderInProgress,
	}, corev1.EventTypeNormal)
}

func (p *Plan) event(eventType, reason, note string) {
	p.Events = append(p.Events, event{eventType: eventType, reason: reason, note: note})
}

// setCondition records c and, when that changes the status, an event with
// the condition's reason and message.
func (p *Plan) setCondition(c metav1.Condition, eventType string) {
	if setCondition(&p.Status, c, p.Now) {
		p.event(eventType, c.Reason, c.Message)
	}
}

func (p *Plan) fail(reason, message string) {
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetFailed), Status: metav1.ConditionTrue, Reason: reason, Message: message,
	}, corev1.EventTypeWarning)
	p.clearRestarting(ReasonRestartingJobSetFailed, MessageRestartingJobSetFailed)
	p.Status.TerminalState = string(jobset.JobSetFailed)
	p.Finished = jobset.JobSetFailed
}

func (p *Plan) complete() {
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue,
		Reason: ReasonAllJobsCompleted, Message: MessageAllJobsCompleted,
	}, corev1.EventTypeNormal)
	p.clearRestarting(ReasonRestartingJobSetCompleted, MessageAllJobsCompleted)
	p.Status.TerminalState = string(jobset.JobSetCompleted)
	p.Finished = jobset.JobSetCompleted
}

// clearRestarting sets RestartingJobSet False, if the JobSet has that
// condition at all.
func (p *Plan) clearRestarting(reason, message string) {
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetRestarting), Status: metav1.ConditionFalse, Reason: reason, Message: message,
	}, corev1.EventTypeNormal)
}

// allCreates flattens createJobs.
func (p *Plan) allCreates() []*batchv1.Job { return slices.Concat(p.CreateJobs...) }
