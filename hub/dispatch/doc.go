// Package dispatch is the hub's controller for users' JobSets: it places
// each JobSet on a member cluster, writes the JobSetDispatch the member's
// agent runs, keeps the dispatch in step with the JobSet's spec, mirrors the
// member's status back, moves the JobSet when its member is lost, and
// removes the member copy before letting the JobSet go.
//
// Files, by what they hold:
//
//   - controller.go: the Reconciler, its Options, and what it watches
//     (JobSets, their dispatches, member changes, the fence's probes).
//   - reconcile.go: one reconcile: observe, ComputePlan, apply; the
//     release of a dispatch, the PlacementDecision, events.
//   - plan.go: ComputePlan, the pure planner: place, propagate, move,
//     withdraw what did not start, wait for a fence, retire old
//     dispatches, TTL.
//   - queue.go: the fleet queue, pure: its order (Priority, then
//     submission), Admit (whose turn it is under BestEffortFIFO or
//     StrictFIFO), the Queued message and its signature without live
//     numbers.
//   - queueing.go: the queue as the reconciler keeps it: the chooser that
//     places in queue order under the placement lock, and what re-evaluates
//     waiting JobSets (member changes that could let them fit, kicks).
//   - start.go: the start deadline, pure: when a placement started, the
//     per-JobSet timeout, the members a withdrawal excludes.
//   - kueue.go: Kueue on the hub: a JobSet a Kueue queue holds suspended
//     is placed only once admitted.
//   - kueue_readmission.go: a JobSet Kueue suspends before it started goes
//     back to its queue (its copy removed through the confirmed stop).
//   - kueue_flavor.go: a ResourceFlavor that names a member
//     (fleet.MemberNodeLabel) pins the placement there; the key is
//     stripped from the copy.
//   - commitments.go: what the hub dispatched that members do not report
//     yet, counted by placement.
//   - copies.go: the hub's own look at, and stop of, copies on silent
//     members (package fence).
//   - conditions.go: the hub's finalizers, condition types, reasons, and
//     on-member-lost policies.
//   - mirror.go: the member's report mirrored into the user's status:
//     restarts carried across placements, hub conditions kept, TTL.
//   - template.go: the JobSetDispatch the hub writes: the member's
//     template of the JobSet, its Pod Security labels.
//   - metrics.go: latencies (submit, start, queue wait), the JobSet and member-state gauges.
//
// Decisions are pure functions (plan.go, queue.go, start.go, mirror.go,
// template.go) so they
// can be table-tested; the reconciler only observes and applies.
package dispatch
