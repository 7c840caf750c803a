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
//     the hub will soon place them elsewhere. Durations are measured on the
//     agent's own monotonic clock; only when a new agent process starts does
//     it compare wall clocks, once, to count from the renewal its
//     predecessor recorded (a restart is not a renewal). The predecessor
//     may have run on another node: a clock behind the old node's by s
//     makes the new process fence s late (one ahead, s early), so the fence
//     timeout's margin below the hub's member-lost timeout must cover the
//     nodes' clock skew (NTP keeps it to milliseconds). A process that
//     finds no record (first start) counts from its own start.
//   - Metrics (metrics.go): fenced, seconds since the last renewal,
//     dispatches by state, errors per loop.
//
// Decisions are pure functions (plan.go, fence.go, properties.go) so they
// can be table-tested; the reconciler only observes and applies.
package agent
