package v1alpha1

// MemberNodeLabel is the node-label key by which a Kueue ResourceFlavor on
// the hub stands for one member cluster: a flavor whose nodeLabels hold
// MemberNodeLabel=<member> turns a ClusterQueue's quota of that flavor into
// that member's quota. Kueue writes the flavor's node labels into the pod
// templates of a JobSet it admits; the hub places the JobSet on the member
// the key names, and leaves the key out of the member copy (no node
// carries it). Other labels and tolerations of the flavor reach the copy.
const MemberNodeLabel = "fleet.jobset.x-k8s.io/member"

// KueueQueueNameLabel is Kueue's label naming a JobSet's LocalQueue. On the
// hub, Kueue holds such a JobSet suspended until its ClusterQueue admits
// it, and the hub places it only then. A member copy keeps it, so a
// member's own Kueue admits the copy there.
const KueueQueueNameLabel = "kueue.x-k8s.io/queue-name"
