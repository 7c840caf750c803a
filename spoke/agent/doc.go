// Package agent is the member side of the fleet: the loop that keeps a member
// cluster in sync with its namespace on the hub.
//
// It runs next to the spoke JobSet reconciler in the member's manager, with a
// second controller-runtime cluster for the hub whose cache sees only the
// member namespace (fleet-member-<cluster>): the agent's hub credentials can
// read nothing else.
//
//   - Work (dispatch.go): every JobSetDispatch in the member namespace becomes
//     a member JobSet with the origin's namespace and name, labelled with the
//     origin UID and epoch and annotated with the dispatch; the member
//     JobSet's status flows back to the dispatch status.
//   - Heartbeat (heartbeat.go): the agent renews a Lease in the member
//     namespace about every 10 s and keeps its ClusterProfile status current.
//   - Fencing (fence.go): when no renewal succeeded for fenceTimeout, the
//     agent stops (suspends or deletes) every fleet JobSet it runs, because
//     the hub will soon place them elsewhere. Durations are measured on the
//     agent's own monotonic clock, never by comparing clocks.
//
// Decisions are pure functions (plan.go, status.go, fence.go,
// properties.go) so they can be table-tested; the reconciler only observes
// and applies.
package agent
