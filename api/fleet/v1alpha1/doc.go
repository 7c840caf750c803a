// Package v1alpha1 holds the fleet API, group fleet.jobset.x-k8s.io: the
// objects the hub and the member agents exchange on the hub cluster, and the
// contract both sides agree on: names, finalizers and the agent's Secret
// (names.go), the dispatch conditions and their reasons
// (jobsetdispatch_types.go), bounded messages (messages.go), and how a
// member copy's labels and annotations are read (membercopy.go). The
// contract in short:
//
// Inventory. Each member has a ClusterProfile (cluster-inventory-api) in the
// inventory namespace (default fleet-system), clusterManager jobset-fleet,
// named after the member; its labels are what a JobSet's cluster selector
// matches. Its agent keeps the profile's status current — ControlPlaneHealthy,
// version.kubernetes, and properties allocatable.<resource> and
// free.<resource> for cpu, memory and nvidia.com/gpu — at most every 30s, and
// renews the Lease agent-heartbeat in its member namespace fleet-member-<name>
// about every 10s. The hub judges a heartbeat by when it last saw the Lease
// change on its own clock, never by comparing timestamps across clocks.
//
// Dispatch. For each hub JobSet the hub writes one JobSetDispatch named
// <namespace>.<name> in the chosen member's namespace, with the origin, an
// epoch that grows with every placement (never reused, even across hub
// restarts), and the JobSet's labels, annotations and spec — managedBy
// cleared so the member's built-in controller runs it, and
// failurePolicy.maxRestarts reduced by restarts already spent on earlier
// members. The agent, watching only its namespace, adds AgentFinalizer and
// runs a member JobSet of the same namespace and name, labelled with
// OriginUIDLabel and EpochLabel and annotated with DispatchAnnotation; it
// refuses (Accepted=False, reason Conflict) to take over a JobSet it did not
// create, and reports the member status back in status only when it changed.
//
// Deletion. When a dispatch is deleted the agent deletes the member copy in
// the foreground, sets DispatchDeleted=True and drops its finalizer; the hub
// then releases the user's JobSet. A member silent for the hub's
// member-lost timeout no longer blocks deletion, and its JobSets are placed
// again with a new epoch. Its agent, having failed to renew the heartbeat for
// its shorter fence timeout, has already stopped them (suspend or delete);
// on reconnect it removes copies whose epoch is stale or whose dispatch is
// gone.
//
// +kubebuilder:object:generate=true
// +groupName=fleet.jobset.x-k8s.io
package v1alpha1
