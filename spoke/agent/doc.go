// Package agent is the member side of the fleet: the loop that keeps a member
// cluster in sync with its namespace on the hub.
//
// It runs next to the spoke JobSet reconciler in the member's manager, as
// one leader-elected runnable, with a controller-runtime cluster for the hub
// whose cache sees only the member namespace (fleet-member-<cluster>): the
// agent's hub credentials can read nothing else. The hub cluster is not a
// runnable of the member manager: the agent starts it in the background and
// waits for its cache without a timeout, so an unreachable hub never delays
// or stops the member's own JobSet controller and webhooks.
//
//   - Work (dispatch.go, plan.go): every JobSetDispatch in the member
//     namespace becomes a member JobSet with the origin's namespace and name,
//     labelled with the origin UID and epoch, annotated with the dispatch and
//     held by ReportFinalizer until its last status reached the hub; the
//     member JobSet's status flows back to the dispatch status.
//   - Heartbeat (heartbeat.go): the agent renews a Lease in the member
//     namespace about every 10 s on a goroutine that does nothing else,
//     records each renewal on the member (Lease agent-hub-renewal in its own
//     namespace) on another, and keeps its ClusterProfile status current on
//     a third.
//   - Fencing (fence.go): when no renewal succeeded for fenceTimeout, the
//     agent stops (suspends or deletes) every fleet JobSet it runs, because
//     the hub will soon place them elsewhere. Durations are measured on one
//     clock at a time: the agent's own monotonic clock while it runs, and,
//     when a new agent process starts, the member apiserver's, which
//     stamped the write of the renewal its predecessor recorded and stamps
//     a fresh write now (a restart is not a renewal). Wall clocks of the
//     agents' nodes are never compared. A process that finds no record
//     (first start) counts from its own start.
//   - Standby fencing (standby.go): every replica, leader or not, from the
//     process's start (no leadership, cache or hub needed), stops the
//     fleet's copies once the renewal recorded on the member is
//     fenceTimeout old on the member apiserver's clock. A crash-looping
//     agent never leads long enough for the leader's fencer to run; this
//     one fences it. It only stops; resuming is the leader's.
//   - Work the member refuses (dispatch.go): a create that fails for a
//     lasting reason (admission, validation, size, quota, a namespace
//     being deleted or missing, the agent's namespace policy) is reported
//     as Accepted=False with a reason, so the hub places the JobSet
//     elsewhere; transient failures are retried.
//   - Hub access (hubaccess.go, credentials.go): the agent keeps its hub
//     token current while it runs; when the hub rejects it (an agent
//     stopped longer than its token lives) it says so with the command
//     that recovers, and stays fenced.
//   - Epoch (plan.go): every Pod of a copy gets its placement epoch, a
//     fencing token for the storage it writes to.
//   - Metrics (metrics.go): fenced, time of the last renewal,
//     dispatches by state, errors per loop.
//
// Decisions are pure functions (plan.go, fence.go, properties.go) so they
// can be table-tested; the reconciler only observes and applies. ComputePlan
// is a planner with one small method per situation (orphaned, deleting,
// noCopy, copyDeleting, track, ...), the shape of the hub's planner
// (docs/architecture.md). Setup (agent.go) builds the hub cluster, the
// indexes, the dispatch controller and the background loops, each in its
// own function.
package agent
